//! Request bodies as they arrive, and JSON parsing.
//!
//! Bodies are parsed with the parser `BODY_PARSER` names, chosen by
//! measurement on a 256 x 384 upsert (`cargo bench --bench json_parse`);
//! bodies with vectors (`vectors::Vectors`) have their number arrays read
//! by `api::vectors` first, with the same result.

use super::error::ApiError;
use super::vectors::{self, Step, Vectors};
use aionbd_shards::payload::filter::FilterSpec;
use aionbd_shards::payload::Payload;
use aionbd_shards::Metric;
use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;

/// `Some(T)` when present; `null` is an error (API.md §2: `null` for an
/// object or array is 400), absence is `None` via `#[serde(default)]`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
pub struct CreateCollection {
    pub name: String,
    pub dimension: u64,
    #[serde(default = "yes")]
    pub strict_finite: bool,
}

#[derive(Deserialize)]
pub struct UpsertPoint {
    pub values: Vec<f32>,
    #[serde(default, deserialize_with = "present")]
    pub payload: Option<Payload>,
}

impl Vectors for UpsertPoint {
    const PATHS: &'static [&'static [Step]] = &[&[Step::Key("values")]];

    fn slot(&mut self, _: usize, _: &[usize]) -> Option<&mut Vec<f32>> {
        Some(&mut self.values)
    }
}

#[derive(Deserialize)]
pub struct BatchPoint {
    pub id: u64,
    pub values: Vec<f32>,
    #[serde(default, deserialize_with = "present")]
    pub payload: Option<Payload>,
}

#[derive(Deserialize)]
pub struct BatchUpsert {
    pub points: Vec<BatchPoint>,
}

impl Vectors for BatchUpsert {
    const PATHS: &'static [&'static [Step]] = &[&[Step::Key("points"), Step::Item, Step::Key("values")]];

    fn slot(&mut self, _: usize, items: &[usize]) -> Option<&mut Vec<f32>> {
        Some(&mut self.points.get_mut(*items.first()?)?.values)
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Auto,
    Exact,
    Ivf,
    Hnsw,
}

/// The body of the three search routes: top-1 and top-k take `query`, batch
/// takes `queries`; the rest is shared.
#[derive(Deserialize)]
pub struct Search {
    #[serde(default, deserialize_with = "present")]
    pub query: Option<Vec<f32>>,
    #[serde(default, deserialize_with = "present")]
    pub queries: Option<Vec<Vec<f32>>>,
    #[serde(default)]
    pub metric: Option<Metric>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub target_recall: Option<f64>,
    #[serde(default)]
    pub include_payload: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub filter: Option<FilterSpec>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub nprobe: Option<u64>,
    #[serde(default)]
    pub ef: Option<u64>,
}

impl Vectors for Search {
    const PATHS: &'static [&'static [Step]] = &[&[Step::Key("query")], &[Step::Key("queries"), Step::Item]];

    fn slot(&mut self, path: usize, items: &[usize]) -> Option<&mut Vec<f32>> {
        match path {
            0 => self.query.as_mut(),
            _ => self.queries.as_mut()?.get_mut(*items.first()?),
        }
    }
}

#[derive(Deserialize)]
pub struct Distance {
    pub left: Vec<f32>,
    pub right: Vec<f32>,
    #[serde(default)]
    pub metric: Option<Metric>,
}

impl Vectors for Distance {
    const PATHS: &'static [&'static [Step]] = &[&[Step::Key("left")], &[Step::Key("right")]];

    fn slot(&mut self, path: usize, _: &[usize]) -> Option<&mut Vec<f32>> {
        Some(if path == 0 { &mut self.left } else { &mut self.right })
    }
}

#[derive(Deserialize)]
pub struct Count {
    #[serde(default, deserialize_with = "present")]
    pub filter: Option<FilterSpec>,
}

#[derive(Deserialize)]
pub struct PayloadSet {
    pub points: Vec<u64>,
    pub payload: Payload,
}

#[derive(Deserialize)]
pub struct PayloadDelete {
    pub points: Vec<u64>,
    pub keys: Vec<String>,
}

/// Which JSON parser decodes request bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonParser {
    Simd,
    Serde,
}

/// serde_json: 2.2x faster than simd-json's serde path on a 256 x 384
/// upsert body (4.6 vs 9.9 ms per 2.06 MB body; `cargo bench --bench json_parse`).
pub const BODY_PARSER: JsonParser = JsonParser::Serde;

/// Parse a JSON body (which the parser may scribble over). Every body of
/// this API is an object: serde would also read a struct from an array
/// (`["name", 3]`), which API.md §2 calls a wrong type (400).
pub fn parse_with<T: DeserializeOwned>(parser: JsonParser, body: &mut [u8]) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b != b'{') {
        return Err(ApiError::invalid("invalid JSON body: expected a JSON object"));
    }
    match parser {
        JsonParser::Serde => {
            serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
        }
        JsonParser::Simd => {
            simd_json::serde::from_slice::<T>(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
        }
    }
}

pub fn parse<T: DeserializeOwned>(body: &mut [u8]) -> Result<T, ApiError> {
    parse_with(BODY_PARSER, body)
}

/// Parse a body with vectors: their arrays read straight from the text
/// (`api::vectors`, bit for bit what `parse` gives), anything else the
/// fast reading does not take parsed by `parse`, errors included.
pub fn parse_vectors<T: Vectors>(body: &mut [u8]) -> Result<T, ApiError> {
    if BODY_PARSER == JsonParser::Serde {
        if let Some(parsed) = vectors::parse(body) {
            return Ok(parsed);
        }
    }
    parse(body)
}
