//! Write-ahead log records: the effect of each home-shard write, in a
//! compact binary encoding. A record holds everything replay needs to redo
//! the write deterministically (the uid a create assigned, the validated
//! points), so replaying a log through [`crate::Shard`] rebuilds the same
//! state. Decoding never panics: bad bytes are an error.

use crate::ops::{CollectionSpec, PointIn};
use crate::payload::{Payload, PayloadValue, Scalar};
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum LogRecord {
    CreateCollection { spec: CollectionSpec, uid: u64 },
    DeleteCollection { name: String },
    Upsert { name: String, points: Vec<PointIn> },
    DeletePoints { name: String, ids: Vec<u64> },
    SetPayload { name: String, ids: Vec<u64>, patch: Payload },
    DeletePayloadKeys { name: String, ids: Vec<u64>, keys: Vec<String> },
}

/// An upsert split by partition: (collection, every id, encoded parts).
pub type SplitUpsert = (String, Vec<u64>, Vec<Vec<u8>>);

/// Record kinds as stored in the WAL record header.
pub mod kind {
    pub const CREATE_COLLECTION: u8 = 1;
    pub const DELETE_COLLECTION: u8 = 2;
    pub const UPSERT: u8 = 3;
    pub const DELETE_POINTS: u8 = 4;
    pub const SET_PAYLOAD: u8 = 5;
    pub const DELETE_PAYLOAD_KEYS: u8 = 6;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "undecodable log record: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn ids(&mut self, ids: &[u64]) {
        self.u32(ids.len() as u32);
        ids.iter().for_each(|&i| self.u64(i));
    }
    fn scalar(&mut self, s: &Scalar) {
        match s {
            Scalar::Str(v) => {
                self.u8(0);
                self.str(v)
            }
            Scalar::Int(v) => {
                self.u8(1);
                self.u64(*v as u64)
            }
            Scalar::Float(v) => {
                self.u8(2);
                self.u64(v.to_bits())
            }
            Scalar::Bool(v) => {
                self.u8(3);
                self.u8(*v as u8)
            }
        }
    }
    fn payload(&mut self, p: &Payload) {
        self.u32(p.len() as u32);
        for (k, v) in p {
            self.str(k);
            match v {
                PayloadValue::One(s) => {
                    self.u8(0);
                    self.scalar(s)
                }
                PayloadValue::Many(list) => {
                    self.u8(1);
                    self.u32(list.len() as u32);
                    list.iter().for_each(|s| self.scalar(s));
                }
            }
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

fn err<T>(what: &str) -> Result<T, DecodeError> {
    Err(DecodeError(what.to_owned()))
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => err("record ends early"),
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    /// A count of items each at least `min_item_bytes` long, checked against
    /// the bytes left so a bad count cannot allocate unbounded memory.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes) > self.b.len() - self.at {
            return err("count larger than the record");
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec()).or_else(|_| err("string is not UTF-8"))
    }
    fn ids(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }
    fn scalar(&mut self) -> Result<Scalar, DecodeError> {
        Ok(match self.u8()? {
            0 => Scalar::Str(self.str()?),
            1 => Scalar::Int(self.u64()? as i64),
            2 => Scalar::Float(f64::from_bits(self.u64()?)),
            3 => Scalar::Bool(self.u8()? != 0),
            _ => return err("unknown scalar tag"),
        })
    }
    fn payload(&mut self) -> Result<Payload, DecodeError> {
        let n = self.count(6)?;
        let mut p = Payload::new();
        for _ in 0..n {
            let k = self.str()?;
            let v = match self.u8()? {
                0 => PayloadValue::One(self.scalar()?),
                1 => {
                    let m = self.count(2)?;
                    PayloadValue::Many((0..m).map(|_| self.scalar()).collect::<Result<_, _>>()?)
                }
                _ => return err("unknown payload value tag"),
            };
            p.insert(k, v);
        }
        Ok(p)
    }
}

impl LogRecord {
    pub fn kind(&self) -> u8 {
        match self {
            LogRecord::CreateCollection { .. } => kind::CREATE_COLLECTION,
            LogRecord::DeleteCollection { .. } => kind::DELETE_COLLECTION,
            LogRecord::Upsert { .. } => kind::UPSERT,
            LogRecord::DeletePoints { .. } => kind::DELETE_POINTS,
            LogRecord::SetPayload { .. } => kind::SET_PAYLOAD,
            LogRecord::DeletePayloadKeys { .. } => kind::DELETE_PAYLOAD_KEYS,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match self {
            LogRecord::CreateCollection { spec, uid } => {
                w.str(&spec.name);
                w.u64(spec.dimension as u64);
                w.u8(spec.strict_finite as u8);
                w.u64(*uid);
            }
            LogRecord::DeleteCollection { name } => w.str(name),
            LogRecord::Upsert { name, points } => {
                w.str(name);
                w.u32(points.len() as u32);
                for p in points {
                    w.u64(p.id);
                    w.u32(p.values.len() as u32);
                    p.values.iter().for_each(|v| w.0.extend_from_slice(&v.to_le_bytes()));
                    w.payload(&p.payload);
                }
            }
            LogRecord::DeletePoints { name, ids } => {
                w.str(name);
                w.ids(ids);
            }
            LogRecord::SetPayload { name, ids, patch } => {
                w.str(name);
                w.ids(ids);
                w.payload(patch);
            }
            LogRecord::DeletePayloadKeys { name, ids, keys } => {
                w.str(name);
                w.ids(ids);
                w.u32(keys.len() as u32);
                keys.iter().for_each(|k| w.str(k));
            }
        }
        w.0
    }

    /// Split an encoded `Upsert` by partition without decoding vectors:
    /// the collection, every point id, and per partition (by `part_of`
    /// over `parts`) an encoded `Upsert` of just its points (empty when it
    /// has none). Start-up uses it so each shard decodes its own points.
    pub fn split_upsert(body: &[u8], parts: usize, part_of: impl Fn(u64) -> usize) -> Result<SplitUpsert, DecodeError> {
        let mut r = Reader { b: body, at: 0 };
        let name = r.str()?;
        let n = r.count(16)?;
        let mut ids = Vec::with_capacity(n);
        let mut points: Vec<(Vec<u8>, u32)> = vec![(Vec::new(), 0); parts];
        for _ in 0..n {
            let start = r.at;
            let id = r.u64()?;
            let dim = r.count(4)?;
            r.take(dim * 4)?;
            r.payload()?;
            ids.push(id);
            let part = &mut points[part_of(id).min(parts - 1)];
            part.0.extend_from_slice(&body[start..r.at]);
            part.1 += 1;
        }
        if r.at != body.len() {
            return err("bytes left after the record");
        }
        let bodies = points
            .into_iter()
            .map(|(bytes, count)| {
                if count == 0 {
                    return Vec::new();
                }
                let mut w = Writer(Vec::with_capacity(bytes.len() + name.len() + 8));
                w.str(&name);
                w.u32(count);
                w.0.extend_from_slice(&bytes);
                w.0
            })
            .collect();
        Ok((name, ids, bodies))
    }

    /// An encoded `Upsert` as (collection, point count, the points' bytes),
    /// without decoding the points. Bodies of one collection concatenate:
    /// [`LogRecord::encode_upsert_parts`] of the summed count and the joined
    /// bytes is the upsert of all their points in order, which replay uses
    /// to apply runs of small upserts as one.
    pub fn upsert_parts(body: &[u8]) -> Result<(&str, u32, &[u8]), DecodeError> {
        let mut r = Reader { b: body, at: 0 };
        let len = r.count(1)?;
        let name = std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError("collection name is not UTF-8".into()))?;
        let n = r.count(16)? as u32;
        Ok((name, n, &body[r.at..]))
    }

    /// The body of an `Upsert` from [`LogRecord::upsert_parts`]' pieces.
    pub fn encode_upsert_parts(name: &str, count: u32, points: &[u8]) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(8 + name.len() + points.len()));
        w.str(name);
        w.u32(count);
        w.0.extend_from_slice(points);
        w.0
    }

    /// The collection a record of any kind belongs to, read without
    /// decoding the rest (every body starts with the collection's name).
    /// Re-placing data into a new layout routes records by it.
    pub fn collection_name(kind: u8, body: &[u8]) -> Result<&str, DecodeError> {
        if !(kind::CREATE_COLLECTION..=kind::DELETE_PAYLOAD_KEYS).contains(&kind) {
            return err(&format!("unknown record kind {kind}"));
        }
        let mut r = Reader { b: body, at: 0 };
        let len = r.count(1)?;
        let bytes = r.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError("collection name is not UTF-8".into()))
    }

    pub fn decode(kind: u8, body: &[u8]) -> Result<LogRecord, DecodeError> {
        let mut r = Reader { b: body, at: 0 };
        let rec = match kind {
            kind::CREATE_COLLECTION => {
                let name = r.str()?;
                let dimension = r.u64()? as usize;
                let strict_finite = r.u8()? != 0;
                let uid = r.u64()?;
                LogRecord::CreateCollection { spec: CollectionSpec { name, dimension, strict_finite }, uid }
            }
            kind::DELETE_COLLECTION => LogRecord::DeleteCollection { name: r.str()? },
            kind::UPSERT => {
                let name = r.str()?;
                let n = r.count(16)?;
                let mut points = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = r.u64()?;
                    let dim = r.count(4)?;
                    let raw = r.take(dim * 4)?;
                    let values = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                    let payload = r.payload()?;
                    points.push(PointIn { id, values, payload });
                }
                LogRecord::Upsert { name, points }
            }
            kind::DELETE_POINTS => LogRecord::DeletePoints { name: r.str()?, ids: r.ids()? },
            kind::SET_PAYLOAD => LogRecord::SetPayload { name: r.str()?, ids: r.ids()?, patch: r.payload()? },
            kind::DELETE_PAYLOAD_KEYS => {
                let name = r.str()?;
                let ids = r.ids()?;
                let n = r.count(4)?;
                let keys = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
                LogRecord::DeletePayloadKeys { name, ids, keys }
            }
            other => return Err(DecodeError(format!("unknown record kind {other}"))),
        };
        if r.at != body.len() {
            return err("bytes left after the record");
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            ".{0,8}".prop_map(Scalar::Str),
            any::<i64>().prop_map(Scalar::Int),
            any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan()).prop_map(Scalar::Float),
            any::<bool>().prop_map(Scalar::Bool),
        ]
    }

    fn arb_payload() -> impl Strategy<Value = Payload> {
        let value = prop_oneof![
            arb_scalar().prop_map(PayloadValue::One),
            prop::collection::vec(arb_scalar(), 0..3).prop_map(PayloadValue::Many)
        ];
        prop::collection::btree_map(".{1,6}", value, 0..4)
    }

    proptest! {
        /// Splitting an upsert by partition and decoding the parts gives
        /// the same points as decoding the whole record.
        #[test]
        fn split_upsert_partitions_the_points(
            points in prop::collection::vec(
                (any::<u64>(), prop::collection::vec(-1e6f32..1e6, 0..5), arb_payload())
                    .prop_map(|(id, values, payload)| PointIn { id, values, payload }),
                0..8,
            ),
            parts in 1usize..4,
        ) {
            let rec = LogRecord::Upsert { name: "c".into(), points: points.clone() };
            let (name, ids, bodies) = LogRecord::split_upsert(&rec.encode(), parts, |id| (id % parts as u64) as usize).unwrap();
            prop_assert_eq!(name, "c");
            prop_assert_eq!(ids, points.iter().map(|p| p.id).collect::<Vec<_>>());
            for (part, body) in bodies.iter().enumerate() {
                let want: Vec<PointIn> = points.iter().filter(|p| (p.id % parts as u64) as usize == part).cloned().collect();
                if want.is_empty() {
                    prop_assert!(body.is_empty());
                } else {
                    let got = LogRecord::decode(kind::UPSERT, body).unwrap();
                    prop_assert_eq!(got, LogRecord::Upsert { name: "c".into(), points: want });
                }
            }
        }
    }

    fn arb_record() -> impl Strategy<Value = LogRecord> {
        let name = "[a-z]{1,8}";
        let ids = prop::collection::vec(any::<u64>(), 0..5);
        let point = (any::<u64>(), prop::collection::vec(-1e6f32..1e6, 0..9), arb_payload())
            .prop_map(|(id, values, payload)| PointIn { id, values, payload });
        prop_oneof![
            (name, 1usize..5000, any::<bool>(), any::<u64>()).prop_map(|(n, d, s, uid)| LogRecord::CreateCollection {
                spec: CollectionSpec { name: n, dimension: d, strict_finite: s },
                uid
            }),
            name.prop_map(|name| LogRecord::DeleteCollection { name }),
            (name, prop::collection::vec(point, 0..4)).prop_map(|(name, points)| LogRecord::Upsert { name, points }),
            (name, ids.clone()).prop_map(|(name, ids)| LogRecord::DeletePoints { name, ids }),
            (name, ids.clone(), arb_payload()).prop_map(|(name, ids, patch)| LogRecord::SetPayload {
                name,
                ids,
                patch
            }),
            (name, ids, prop::collection::vec(".{0,5}", 0..3))
                .prop_map(|(name, ids, keys)| LogRecord::DeletePayloadKeys { name, ids, keys }),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(rec in arb_record()) {
            let bytes = rec.encode();
            prop_assert_eq!(LogRecord::decode(rec.kind(), &bytes), Ok(rec));
        }

        /// Joining the parts of two upserts of one collection gives the
        /// upsert of both point lists, in order.
        #[test]
        fn upsert_parts_concatenate(
            a in prop::collection::vec((any::<u64>(), prop::collection::vec(-1e6f32..1e6, 0..5), arb_payload()), 0..4),
            b in prop::collection::vec((any::<u64>(), prop::collection::vec(-1e6f32..1e6, 0..5), arb_payload()), 0..4),
        ) {
            let pts = |v: &Vec<(u64, Vec<f32>, Payload)>| -> Vec<PointIn> {
                v.iter().map(|(id, values, payload)| PointIn { id: *id, values: values.clone(), payload: payload.clone() }).collect()
            };
            let (ra, rb) = (LogRecord::Upsert { name: "c".into(), points: pts(&a) }, LogRecord::Upsert { name: "c".into(), points: pts(&b) });
            let (ea, eb) = (ra.encode(), rb.encode());
            let (na, ca, pa) = LogRecord::upsert_parts(&ea).unwrap();
            let (_, cb, pb) = LogRecord::upsert_parts(&eb).unwrap();
            let joined = LogRecord::encode_upsert_parts(na, ca + cb, &[pa, pb].concat());
            let mut all = pts(&a);
            all.extend(pts(&b));
            prop_assert_eq!(LogRecord::decode(kind::UPSERT, &joined).unwrap(), LogRecord::Upsert { name: "c".into(), points: all });
        }

        #[test]
        fn the_collection_name_is_read_from_every_kind(rec in arb_record()) {
            let name = match &rec {
                LogRecord::CreateCollection { spec, .. } => spec.name.clone(),
                LogRecord::DeleteCollection { name }
                | LogRecord::Upsert { name, .. }
                | LogRecord::DeletePoints { name, .. }
                | LogRecord::SetPayload { name, .. }
                | LogRecord::DeletePayloadKeys { name, .. } => name.clone(),
            };
            let bytes = rec.encode();
            prop_assert_eq!(LogRecord::collection_name(rec.kind(), &bytes), Ok(name.as_str()));
            prop_assert!(LogRecord::collection_name(0, &bytes).is_err());
        }

        #[test]
        fn garbage_never_panics(kind in 0u8..8, bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = LogRecord::decode(kind, &bytes);
        }

        #[test]
        fn truncated_records_are_errors(rec in arb_record(), cut in any::<prop::sample::Index>()) {
            let bytes = rec.encode();
            prop_assume!(!bytes.is_empty());
            let cut = cut.index(bytes.len());
            prop_assert!(LogRecord::decode(rec.kind(), &bytes[..cut]).is_err());
        }
    }
}
