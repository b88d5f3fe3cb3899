//! Payload filters (API.md §7): parsed from JSON into a validated [`Filter`],
//! then evaluated against payloads. Unknown keys at the filter level are
//! ignored; inside a clause they are an error.

use crate::error::{invalid, ShardError};
use crate::payload::{Payload, PayloadValue, Scalar};
use serde::Deserialize;

/// A filter as it arrives on the wire, before validation.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FilterSpec {
    #[serde(default, deserialize_with = "present")]
    pub must: Option<Vec<ClauseSpec>>,
    #[serde(default, deserialize_with = "present")]
    pub should: Option<Vec<ClauseSpec>>,
    #[serde(default, deserialize_with = "present")]
    pub must_not: Option<Vec<ClauseSpec>>,
    #[serde(default)]
    pub minimum_should_match: Option<u64>,
}

/// `Some(T)` when present; `null` is an error (API.md §2: `null` for an
/// array is 400), absence is `None` via `#[serde(default)]`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// One clause as it arrives: exactly one of `value` or range bounds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClauseSpec {
    pub field: String,
    #[serde(default)]
    pub value: Option<Scalar>,
    #[serde(default)]
    pub gt: Option<f64>,
    #[serde(default)]
    pub gte: Option<f64>,
    #[serde(default)]
    pub lt: Option<f64>,
    #[serde(default)]
    pub lte: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Clause {
    Match { field: String, value: Scalar },
    Range { field: String, gt: Option<f64>, gte: Option<f64>, lt: Option<f64>, lte: Option<f64> },
}

/// A validated filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub must: Vec<Clause>,
    pub should: Vec<Clause>,
    pub must_not: Vec<Clause>,
    /// Should-clauses that must match; 0 disables the should list.
    pub min_should: usize,
}

impl FilterSpec {
    pub fn validate(self) -> Result<Filter, ShardError> {
        let must = validate_clauses(self.must)?;
        let should = validate_clauses(self.should)?;
        let must_not = validate_clauses(self.must_not)?;
        let min_should = match self.minimum_should_match {
            None => 1,
            Some(m) if m as usize > should.len() => {
                return Err(invalid(format!(
                    "minimum_should_match ({m}) exceeds the number of should clauses ({})",
                    should.len()
                )))
            }
            Some(m) => m as usize,
        };
        Ok(Filter { must, should, must_not, min_should })
    }
}

fn validate_clauses(list: Option<Vec<ClauseSpec>>) -> Result<Vec<Clause>, ShardError> {
    list.unwrap_or_default().into_iter().map(ClauseSpec::validate).collect()
}

impl ClauseSpec {
    fn validate(self) -> Result<Clause, ShardError> {
        if self.field.trim().is_empty() {
            return Err(invalid("filter clause field must not be blank"));
        }
        let has_range = self.gt.is_some() || self.gte.is_some() || self.lt.is_some() || self.lte.is_some();
        match (self.value, has_range) {
            (Some(_), true) => {
                Err(invalid(format!("filter clause on '{}' mixes 'value' with range bounds", self.field)))
            }
            (Some(value), false) => Ok(Clause::Match { field: self.field, value }),
            (None, false) => Err(invalid(format!(
                "filter clause on '{}' needs 'value' or at least one of gt/gte/lt/lte",
                self.field
            ))),
            (None, true) => {
                let lower = self.gte.or(self.gt);
                let upper = self.lte.or(self.lt);
                if let (Some(lo), Some(hi)) = (lower, upper) {
                    if lo > hi {
                        return Err(invalid(format!(
                            "filter range on '{}' has lower bound {lo} above upper bound {hi}",
                            self.field
                        )));
                    }
                }
                Ok(Clause::Range { field: self.field, gt: self.gt, gte: self.gte, lt: self.lt, lte: self.lte })
            }
        }
    }
}

/// Numbers compare with a tiny relative tolerance, so `1` matches `1.0`.
fn numbers_equal(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

fn scalar_matches(stored: &Scalar, wanted: &Scalar) -> bool {
    match (stored, wanted) {
        (Scalar::Int(a), Scalar::Int(b)) => a == b,
        (Scalar::Str(a), Scalar::Str(b)) => a == b,
        (Scalar::Bool(a), Scalar::Bool(b)) => a == b,
        _ => match (stored.as_f64(), wanted.as_f64()) {
            (Some(a), Some(b)) => numbers_equal(a, b),
            _ => false,
        },
    }
}

fn in_range(x: f64, gt: Option<f64>, gte: Option<f64>, lt: Option<f64>, lte: Option<f64>) -> bool {
    gt.is_none_or(|b| x > b) && gte.is_none_or(|b| x >= b) && lt.is_none_or(|b| x < b) && lte.is_none_or(|b| x <= b)
}

impl Clause {
    pub fn matches(&self, payload: &Payload) -> bool {
        match self {
            Clause::Match { field, value } => {
                payload.get(field).is_some_and(|v: &PayloadValue| v.scalars().iter().any(|s| scalar_matches(s, value)))
            }
            Clause::Range { field, gt, gte, lt, lte } => payload.get(field).is_some_and(|v| {
                v.scalars().iter().any(|s| s.as_f64().is_some_and(|x| in_range(x, *gt, *gte, *lt, *lte)))
            }),
        }
    }
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.must_not.is_empty() && (self.should.is_empty() || self.min_should == 0)
    }

    pub fn matches(&self, payload: &Payload) -> bool {
        if !self.must.iter().all(|c| c.matches(payload)) {
            return false;
        }
        if self.must_not.iter().any(|c| c.matches(payload)) {
            return false;
        }
        if self.should.is_empty() || self.min_should == 0 {
            return true;
        }
        let mut hits = 0;
        for c in &self.should {
            if c.matches(payload) {
                hits += 1;
                if hits >= self.min_should {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type ScalarTest<'a> = Box<dyn Fn(&Scalar) -> bool + 'a>;

    fn filter(json: &str) -> Result<Filter, ShardError> {
        serde_json::from_str::<FilterSpec>(json).map_err(|e| invalid(e.to_string()))?.validate()
    }

    fn payload(json: &str) -> Payload {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn validation_rules() {
        assert!(filter(r#"{"must":[{"field":"a","value":1,"gt":0}]}"#).is_err());
        assert!(filter(r#"{"must":[{"field":"a","value":1,"extra":0}]}"#).is_err());
        assert!(filter(r#"{"must":[{"field":" ","value":1}]}"#).is_err());
        assert!(filter(r#"{"must":[{"field":"a"}]}"#).is_err());
        assert!(filter(r#"{"must":[{"field":"a","gte":5,"lt":4}]}"#).is_err());
        assert!(filter(r#"{"should":[{"field":"a","value":1}],"minimum_should_match":2}"#).is_err());
        assert!(filter(r#"{"unknown":1,"must":[]}"#).is_ok());
    }

    #[test]
    fn matching_semantics() {
        let p = payload(r#"{"n":1,"s":"1","tags":["x","y"],"f":2.5,"b":true}"#);
        assert!(filter(r#"{"must":[{"field":"n","value":1.0}]}"#).unwrap().matches(&p));
        assert!(!filter(r#"{"must":[{"field":"s","value":1}]}"#).unwrap().matches(&p));
        assert!(filter(r#"{"must":[{"field":"tags","value":"y"}]}"#).unwrap().matches(&p));
        assert!(filter(r#"{"must":[{"field":"f","gt":2,"lte":2.5}]}"#).unwrap().matches(&p));
        assert!(!filter(r#"{"must":[{"field":"b","gt":0}]}"#).unwrap().matches(&p));
        assert!(!filter(r#"{"must_not":[{"field":"b","value":true}]}"#).unwrap().matches(&p));
        assert!(filter(r#"{"should":[{"field":"x","value":1},{"field":"n","value":1}]}"#).unwrap().matches(&p));
        assert!(!filter(r#"{"should":[{"field":"x","value":1}]}"#).unwrap().matches(&p));
        assert!(filter(r#"{"should":[{"field":"x","value":1}],"minimum_should_match":0}"#).unwrap().matches(&p));
    }

    /// A plain model of the same rules, written as directly as possible.
    fn model(f: &Filter, p: &Payload) -> bool {
        let eval = |c: &Clause| -> bool {
            let (field, test): (&String, ScalarTest) = match c {
                Clause::Match { field, value } => (field, Box::new(move |s: &Scalar| scalar_matches(s, value))),
                Clause::Range { field, gt, gte, lt, lte } => (
                    field,
                    Box::new(move |s: &Scalar| match s.as_f64() {
                        Some(x) => {
                            !(gt.is_some_and(|b| x <= b)
                                || gte.is_some_and(|b| x < b)
                                || lt.is_some_and(|b| x >= b)
                                || lte.is_some_and(|b| x > b))
                        }
                        None => false,
                    }),
                ),
            };
            match p.get(field) {
                None => false,
                Some(v) => v.scalars().iter().any(test),
            }
        };
        let must = f.must.iter().filter(|c| eval(c)).count() == f.must.len();
        let not = f.must_not.iter().filter(|c| eval(c)).count() == 0;
        let should =
            f.should.is_empty() || f.min_should == 0 || f.should.iter().filter(|c| eval(c)).count() >= f.min_should;
        must && not && should
    }

    fn arb_scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            (0i64..4).prop_map(Scalar::Int),
            (0i64..4).prop_map(|i| Scalar::Float(i as f64 + 0.5 * (i % 2) as f64)),
            prop::sample::select(vec!["a", "b"]).prop_map(|s| Scalar::Str(s.into())),
            any::<bool>().prop_map(Scalar::Bool),
        ]
    }

    fn arb_clause() -> impl Strategy<Value = Clause> {
        let field = prop::sample::select(vec!["f0", "f1", "f2"]).prop_map(String::from);
        prop_oneof![
            (field.clone(), arb_scalar()).prop_map(|(field, value)| Clause::Match { field, value }),
            (field, prop::option::of(0f64..4.0), prop::option::of(0f64..4.0), any::<bool>()).prop_map(
                |(field, lo, hi, strict)| Clause::Range {
                    field,
                    gt: lo.filter(|_| strict),
                    gte: lo.filter(|_| !strict),
                    lt: hi.filter(|_| strict),
                    lte: hi.filter(|_| !strict),
                }
            ),
        ]
    }

    fn arb_payload() -> impl Strategy<Value = Payload> {
        let value = prop_oneof![
            arb_scalar().prop_map(PayloadValue::One),
            prop::collection::vec(arb_scalar(), 0..3).prop_map(PayloadValue::Many),
        ];
        prop::collection::btree_map(prop::sample::select(vec!["f0", "f1", "f2"]).prop_map(String::from), value, 0..3)
    }

    proptest! {
        #[test]
        fn filter_evaluation_equals_plain_model(
            must in prop::collection::vec(arb_clause(), 0..3),
            should in prop::collection::vec(arb_clause(), 0..3),
            must_not in prop::collection::vec(arb_clause(), 0..2),
            min_should in 0usize..3,
            payloads in prop::collection::vec(arb_payload(), 1..20),
        ) {
            let min_should = min_should.min(should.len());
            let f = Filter { must, should, must_not, min_should };
            for p in &payloads {
                prop_assert_eq!(f.matches(p), model(&f, p));
            }
        }
    }
}
