//! The fast reading against the general one (serde_json), bit for bit, on
//! random and edge-case number texts and bodies.

use super::*;
use crate::api::body::{self, BatchUpsert, Distance, Search, UpsertPoint};
use proptest::prelude::*;

/// serde_json's reading of an array of numbers into `f32`s (the general
/// path of every vector field).
fn general(text: &str) -> Option<Vec<f32>> {
    serde_json::from_str::<Vec<f32>>(text).ok()
}

fn fast(text: &str) -> Option<Vec<f32>> {
    let b = text.as_bytes();
    let i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut out = Vec::new();
    let end = array(b, i, &mut out)?;
    (skip_ws(b, end) == b.len()).then_some(out)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Both read `text` alike: the same bits, or both refuse it.
fn check_array(text: &str) -> Result<(), TestCaseError> {
    let (g, f) = (general(text), fast(text));
    prop_assert_eq!(g.as_deref().map(bits), f.as_deref().map(bits), "text {:?}", text);
    Ok(())
}

/// Number texts chosen to sit on the edges of the fast domain and of the
/// `f32` and `f64` ranges, and malformed ones.
const EDGES: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "0e0",
    "-0e-5",
    "0.000",
    "1",
    "-1",
    "5e3",
    "-5E+3",
    "1e05",
    "1.5",
    "0.1",
    "0.3",
    "-0.0018843396",
    "0.019650482",
    "1e22",
    "1e23",
    "1e-22",
    "1e-23",
    "-1e22",
    "123e-20",
    "9007199254740992",
    "9007199254740993",
    "-9007199254740993",
    "9007199254740992e-22",
    "9007199254740993e-22",
    "9007199254740991.5",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999",
    "3.4028235e38",
    "3.4028236e38",
    "3.5e38",
    "-3.5e38",
    "340282356779733661637539395458142568448",
    "1.17549435e-38",
    "1.1754942e-38",
    "1e-45",
    "1.4e-45",
    "7e-46",
    "7.1e-46",
    "1e-46",
    "4.9e-324",
    "2.5e-324",
    "1e-400",
    "-1e-400",
    "1e400",
    "-1e400",
    "1e308",
    "1.8e308",
    "0e99999999999",
    "-0e-99999999999999",
    "1e99999999999",
    "1e-99999999999",
    "1e0000000000000000000000001",
    "1e0022",
    "1e00022",
    "1E-0022",
    "3.141592653589793238462643383279",
    "0.30000000000000004",
    "2.9802322387695312e-8",
    "0.10000000149011612",
    "16777217",
    "16777216.5",
    "33554433",
    "1.00000005960464477539062500001",
    "1.000000059604644775390625",
    "1.0000000596046447753906249999",
    "00",
    "01",
    "-01",
    "-",
    "+1",
    ".5",
    "5.",
    "1e",
    "1e+",
    "1e-",
    "--1",
    "1..2",
    "1.2.3",
    "1e2e3",
    "0x10",
    "NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "inf",
    "1_0",
    "\"1\"",
    "null",
    "true",
    "[1]",
    "1 2",
    "",
];

#[test]
fn edge_numbers_read_as_serde_reads_them() {
    let mut texts: Vec<String> = EDGES.iter().map(|s| s.to_string()).collect();
    texts.push(format!("1{}", "0".repeat(400)));
    texts.push(format!("0.{}1", "0".repeat(400)));
    texts.push(format!("{}.5", "9".repeat(30)));
    texts.push(format!("1.{}", "0".repeat(30)));
    for t in &texts {
        for text in [format!("[{t}]"), format!("[ {t} , {t} ]"), format!("[1,{t},2]")] {
            check_array(&text).unwrap();
        }
    }
}

#[test]
fn arrays_read_as_serde_reads_them() {
    for text in [
        "[]",
        "[ ]",
        " [\n]\t",
        "[1,]",
        "[,1]",
        "[1 2]",
        "[1,,2]",
        "[1",
        "1]",
        "[[1]]",
        "[1,[2]]",
        "[null]",
        "[1,null]",
        "[\"1\"]",
        "[true]",
        "[{}]",
        "[1]x",
        "[1] ",
        "\r\n[\t1\r\n,\n2\t]\r\n",
    ] {
        check_array(text).unwrap();
    }
}

/// A JSON number text: optional sign, an integer part (no leading zeros,
/// up to 25 digits), an optional fraction and an optional exponent.
fn digit_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,24}"],
        prop::option::of("[0-9]{1,25}"),
        prop::option::of(("[eE]", "[+-]?", "[0-9]{1,5}")),
    )
        .prop_map(|(neg, int, frac, exp)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(&int);
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some((e, sign, digits)) = exp {
                s.push_str(&e);
                s.push_str(&sign);
                s.push_str(&digits);
            }
            s
        })
}

/// How clients write numbers: an `f32`'s shortest text (Display, Debug and
/// exponent forms), an `f64`'s (17 digits: Python, JavaScript), and texts
/// near the point halfway between two `f32`s, where reading through an
/// `f64` rounds twice.
fn client_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f32>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| x.to_string()),
        any::<f32>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{x:?}")),
        any::<f32>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{x:e}")),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{x:?}")),
        any::<f32>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{:?}", x as f64)),
        (-1.0e3f32..1.0e3f32).prop_map(|x| x.to_string()),
        (-1.0f32..1.0f32).prop_map(|x| format!("{:?}", x as f64)),
        (any::<f32>().prop_filter("finite, not max", |x| x.is_finite() && x.abs() < f32::MAX), "[0-9]{0,6}").prop_map(
            |(x, tail)| {
                // The exact midpoint to the next f32 up (an f64), written
                // shortest, then maybe nudged by extra digits.
                let next = f32::from_bits(if x >= 0.0 { x.to_bits() + 1 } else { x.to_bits() - 1 });
                let mid = (f64::from(x) + f64::from(next)) / 2.0;
                let text = format!("{mid:e}");
                let (mantissa, exponent) = text.split_once('e').unwrap();
                let mantissa = if mantissa.contains('.') { mantissa.to_owned() } else { format!("{mantissa}.0") };
                format!("{mantissa}{tail}e{exponent}")
            }
        ),
    ]
}

/// Short random texts over the characters numbers are made of (mostly
/// malformed: both must refuse them alike).
fn junk_text() -> impl Strategy<Value = String> {
    "[-+.eE0-9]{1,12}"
}

fn spaced(items: &[String], ws: &[&str]) -> String {
    let mut s = String::from("[");
    for (k, item) in items.iter().enumerate() {
        if k > 0 {
            s.push_str(ws[k % ws.len()]);
            s.push(',');
        }
        s.push_str(ws[(k + 1) % ws.len()]);
        s.push_str(item);
    }
    s.push(']');
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_numbers_read_as_serde_reads_them(
        items in prop::collection::vec(prop_oneof![4 => client_text(), 3 => digit_text(), 1 => junk_text()], 0..12),
        ws in prop::collection::vec(prop_oneof![Just(""), Just(" "), Just("\n"), Just("\t "), Just("\r\n")], 1..4),
    ) {
        check_array(&spaced(&items, &ws))?;
        for item in &items {
            check_array(&format!("[{item}]"))?;
        }
    }

    /// Every finite `f32`'s shortest text is in the fast domain or read by
    /// serde, and the fast domain's results are correctly rounded doubles
    /// (std's parser, itself correctly rounded) made `f32`.
    #[test]
    fn fast_domain_is_correctly_rounded(text in prop_oneof![client_text(), digit_text()]) {
        let b = text.as_bytes();
        if let Some((v, end)) = number(b, 0) {
            prop_assert_eq!(end, b.len());
            let std: f64 = text.parse().unwrap();
            let serde = general(&format!("[{text}]")).unwrap()[0];
            prop_assert_eq!(v.to_bits(), serde.to_bits(), "text {}", text);
            // The general path is the correctly rounded double made f32
            // wherever it computes exactly (the fast domain).
            if is_fast_domain(&text) {
                prop_assert_eq!(v.to_bits(), (std as f32).to_bits(), "text {}", text);
            }
        }
    }
}

/// Whether `number` converts `text` itself (not through serde): its
/// significand of all digits at most 2^53 and its decimal exponent within
/// ±22 (and few exponent digits).
fn is_fast_domain(text: &str) -> bool {
    let t = text.trim_start_matches('-');
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(k) => (&t[..k], &t[k + 1..]),
        None => (t, "0"),
    };
    let exp_digits = exp.trim_start_matches(['+', '-']);
    if exp_digits.len() > EXPONENT_DIGITS_MAX {
        return false;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{}{frac}", int.trim_start_matches('0'));
    let digits = if digits.is_empty() { "0".to_owned() } else { digits };
    let e: i64 = exp.parse().unwrap();
    let exponent = e - frac.len() as i64;
    let count = if int == "0" { frac.len() } else { int.len() + frac.len() };
    count as u32 <= DIGITS_MAX
        && digits.parse::<u128>().is_ok_and(|s| s <= u128::from(EXACT_SIGNIFICAND_MAX))
        && (-22..=22).contains(&exponent)
}

#[test]
fn eight_digits_at_a_time() {
    for text in ["00000000", "12345678", "99999999", "90000001", "01020304"] {
        let word = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
        assert!(eight_digits(word), "{text}");
        assert_eq!(eight_digits_value(word), text.parse::<u64>().unwrap(), "{text}");
    }
    for text in ["1234567a", "/2345678", ":2345678", "1234 678", "-1234567", "1234567."] {
        assert!(!eight_digits(u64::from_le_bytes(text.as_bytes().try_into().unwrap())), "{text}");
    }
}

proptest! {
    #[test]
    fn eight_digit_words(n in 0u64..100_000_000, junk in any::<u64>()) {
        let text = format!("{n:08}");
        let word = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
        prop_assert!(eight_digits(word));
        prop_assert_eq!(eight_digits_value(word), n);
        let all_digits = junk.to_le_bytes().iter().all(u8::is_ascii_digit);
        prop_assert_eq!(eight_digits(junk), all_digits);
    }
}

#[test]
fn the_domain_check_agrees_with_the_reader() {
    for (text, fast) in [("0.019650482", true), ("9007199254740993", false), ("1e23", false), ("1e-22", true)] {
        assert_eq!(is_fast_domain(text), fast, "{text}");
    }
}

// Whole bodies: the fast reading (`vectors::parse`) against the general
// one (`body::parse`) on the four body types.

fn f32_bits(v: &[f32]) -> String {
    v.iter().map(|x| format!("{:08x}", x.to_bits())).collect::<Vec<_>>().join(",")
}

trait Fingerprint {
    fn fingerprint(&self) -> String;
}

impl Fingerprint for UpsertPoint {
    fn fingerprint(&self) -> String {
        format!("{} {:?}", f32_bits(&self.values), self.payload)
    }
}

impl Fingerprint for BatchUpsert {
    fn fingerprint(&self) -> String {
        self.points.iter().map(|p| format!("{} {} {:?};", p.id, f32_bits(&p.values), p.payload)).collect()
    }
}

impl Fingerprint for Search {
    fn fingerprint(&self) -> String {
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            self.query.as_deref().map(f32_bits),
            self.queries.as_ref().map(|q| q.iter().map(|v| f32_bits(v)).collect::<Vec<_>>()),
            self.metric,
            self.mode,
            self.target_recall.map(f64::to_bits),
            self.include_payload,
            self.filter,
            self.limit,
            self.nprobe,
            self.ef
        )
    }
}

impl Fingerprint for Distance {
    fn fingerprint(&self) -> String {
        format!("{} {} {:?}", f32_bits(&self.left), f32_bits(&self.right), self.metric)
    }
}

/// The fast reading, when it answers, equals the general one; the public
/// entry (`parse_vectors`) always equals it, errors included. Returns
/// whether the fast reading answered.
fn check_body<T: Vectors + Fingerprint>(text: &str) -> Result<bool, TestCaseError> {
    let general = body::parse::<T>(&mut text.as_bytes().to_vec());
    let fast = parse::<T>(text.as_bytes());
    if let Some(f) = &fast {
        match &general {
            Ok(g) => prop_assert_eq!(f.fingerprint(), g.fingerprint(), "body {}", text),
            Err(e) => {
                prop_assert!(false, "fast path accepted a body the general path refuses ({}): {}", e.message, text)
            }
        }
    }
    let entry = body::parse_vectors::<T>(&mut text.as_bytes().to_vec());
    match (&entry, &general) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a.fingerprint(), b.fingerprint()),
        (Err(a), Err(b)) => {
            prop_assert_eq!(a.status(), b.status());
            prop_assert_eq!(&a.message, &b.message);
        }
        _ => prop_assert!(false, "parse_vectors and parse disagree on {}", text),
    }
    Ok(fast.is_some())
}

fn vector_text() -> impl Strategy<Value = String> {
    (prop::collection::vec(prop_oneof![4 => client_text(), 1 => digit_text()], 0..6), Just(vec![" ", ""]))
        .prop_map(|(items, ws)| spaced(&items, &ws))
}

/// A payload object: keys that look like vector keys, nested arrays of
/// numbers, strings with escapes and brackets.
fn payload_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop_oneof![Just("values"), Just("query"), Just("label"), Just("n"), Just("tags"), Just("points")],
            prop_oneof![
                Just("1".to_owned()),
                Just("-2.5".to_owned()),
                Just("true".to_owned()),
                Just("\"a \\\"quoted\\\" ] } [ {\"".to_owned()),
                Just("\"\\u0041\\n\"".to_owned()),
                Just("[1, 2.5, 3]".to_owned()),
                Just("[\"x\", \"y\"]".to_owned()),
            ],
        ),
        0..4,
    )
    .prop_map(|members| {
        let inner: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        format!("{{{}}}", inner.join(", "))
    })
}

/// Mutate a body: drop, double or replace one byte (mostly malformed
/// results: both readings must then agree too).
fn mutate(text: &str, at: usize, how: u8, with: u8) -> String {
    let mut b = text.as_bytes().to_vec();
    if b.is_empty() {
        return text.to_owned();
    }
    let at = at % b.len();
    match how % 3 {
        0 => {
            b.remove(at);
        }
        1 => b.insert(at, b[at]),
        _ => {
            let bytes = b"{}[],:\"\\ 0-.e1xn";
            b[at] = bytes[with as usize % bytes.len()];
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn upsert_bodies_read_as_serde_reads_them(
        values in vector_text(),
        payload in prop::option::of(payload_text()),
        extra in prop::option::of(Just(r#""other": [1, {"values": [2]}]"#)),
        escaped_key in any::<bool>(),
        mutation in (any::<usize>(), any::<u8>(), any::<u8>()),
    ) {
        let key = if escaped_key { r#""valu\u0065s""# } else { r#""values""# };
        let mut members = vec![format!("{key}: {values}")];
        if let Some(p) = &payload {
            members.push(format!("\"payload\": {p}"));
        }
        if let Some(e) = extra {
            members.insert(0, e.to_owned());
        }
        let text = format!("{{ {} }}", members.join(", "));
        let took = check_body::<UpsertPoint>(&text)?;
        let general_ok = body::parse::<UpsertPoint>(&mut text.as_bytes().to_vec()).is_ok();
        // A plainly written body with good numbers takes the fast path.
        if general_ok && !escaped_key {
            prop_assert!(took, "fast path declined {}", text);
        }
        check_body::<UpsertPoint>(&mutate(&text, mutation.0, mutation.1, mutation.2))?;
    }

    #[test]
    fn batch_bodies_read_as_serde_reads_them(
        points in prop::collection::vec((any::<u32>(), vector_text(), prop::option::of(payload_text()), any::<bool>()), 0..5),
        mutation in (any::<usize>(), any::<u8>(), any::<u8>()),
    ) {
        let items: Vec<String> = points
            .iter()
            .map(|(id, values, payload, values_first)| {
                let mut m = vec![format!("\"id\": {id}"), format!("\"values\": {values}")];
                if let Some(p) = payload {
                    m.push(format!("\"payload\": {p}"));
                }
                if !values_first {
                    m.rotate_left(1);
                }
                format!("{{{}}}", m.join(","))
            })
            .collect();
        let text = format!("{{\"points\": [{}]}}", items.join(", "));
        let took = check_body::<BatchUpsert>(&text)?;
        if body::parse::<BatchUpsert>(&mut text.as_bytes().to_vec()).is_ok() {
            prop_assert!(took, "fast path declined {}", text);
        }
        check_body::<BatchUpsert>(&mutate(&text, mutation.0, mutation.1, mutation.2))?;
    }

    #[test]
    fn search_and_distance_bodies_read_as_serde_reads_them(
        query in prop::option::of(vector_text()),
        queries in prop::option::of(prop::collection::vec(vector_text(), 0..4)),
        limit in prop::option::of(0u64..20),
        filter in any::<bool>(),
        left in vector_text(),
        right in vector_text(),
        mutation in (any::<usize>(), any::<u8>(), any::<u8>()),
    ) {
        let mut members = Vec::new();
        if let Some(q) = &query {
            members.push(format!("\"query\": {q}"));
        }
        if let Some(qs) = &queries {
            members.push(format!("\"queries\": [{}]", qs.join(",")));
        }
        if let Some(l) = limit {
            members.push(format!("\"limit\": {l}"));
        }
        if filter {
            members.push(r#""filter": {"must": [{"field": "values", "value": "[1]"}, {"field": "n", "gt": 1.5}]}"#.to_owned());
        }
        members.push(r#""metric": "l2""#.to_owned());
        let text = format!("{{{}}}", members.join(", "));
        let took = check_body::<Search>(&text)?;
        if body::parse::<Search>(&mut text.as_bytes().to_vec()).is_ok() {
            prop_assert!(took, "fast path declined {}", text);
        }
        check_body::<Search>(&mutate(&text, mutation.0, mutation.1, mutation.2))?;
        let text = format!("{{\"right\": {right}, \"metric\": \"cosine\", \"left\": {left}}}");
        check_body::<Distance>(&text)?;
        check_body::<Distance>(&mutate(&text, mutation.0, mutation.1, mutation.2))?;
    }
}

#[test]
fn malformed_bodies_get_the_general_error() {
    for text in [
        r#"{"values": [1, 2,]}"#,
        r#"{"values": [1e400]}"#,
        r#"{"values": [1, "2"]}"#,
        r#"{"values": null}"#,
        r#"{"values": [1], "values": [2]}"#,
        r#"{"values": [1]} x"#,
        r#"{"values": [1], }"#,
        r#"{"values": [01]}"#,
        r#"{"payload": {}}"#,
        r#"["values", [1]]"#,
        r#"{"values": [1]"#,
        r#"{"values" [1]}"#,
    ] {
        let general = body::parse::<UpsertPoint>(&mut text.as_bytes().to_vec()).err().expect(text);
        let entry = body::parse_vectors::<UpsertPoint>(&mut text.as_bytes().to_vec()).err().expect(text);
        assert_eq!((general.status(), &general.message), (entry.status(), &entry.message), "{text}");
        assert_eq!(entry.status(), 400);
    }
}
