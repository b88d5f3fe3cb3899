//! Vectors in request bodies, read from the JSON text directly (issue 21).
//!
//! serde_json spends most of a single-point upsert's parse on the 384
//! numbers of its vector: per character it peeks, checks and advances
//! through its reader, and each `f32` goes through a visitor into a
//! growing `Vec`. Here a body is walked once: every array at one of the
//! body type's vector paths ([`Vectors::PATHS`]) is read by [`array`] and
//! replaced by `[]` in a copy of the rest, which serde then parses into the
//! same type (a few bytes for an upsert); the vectors are put back in their
//! fields ([`Vectors::slot`]).
//!
//! The result is the general path's, bit for bit, or there is none:
//!
//! - a number is converted here only where serde_json's own conversion is
//!   one exact IEEE operation: at most 2^53 as the significand of all its
//!   digits and a decimal exponent of at most 22 either way, so both the
//!   significand and the power of ten are exact doubles and their product
//!   or quotient is the exact value correctly rounded (Clinger's fast path,
//!   the first step of every correctly rounded parser). That double is
//!   made an `f32` as serde does (`as`, a second rounding: the API's `f32`
//!   is the JSON number read as an `f64` first), integers as serde's
//!   `u64`/`i64` are. Any other number (more digits, larger exponents,
//!   out of range) is handed to serde_json itself, alone;
//! - anything else unusual (a malformed number or array, an element that is
//!   not a number, a key spelled with escapes, a slot that serde did not
//!   leave empty) makes [`parse`] answer `None`, and the caller parses the
//!   whole body the general way, so errors are the general path's, message
//!   and all.
//!
//! `tests` checks both against serde_json on random and edge-case texts.

use serde::de::DeserializeOwned;

/// One step of a vector's path from the body's top-level object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The value of this key of an object.
    Key(&'static str),
    /// Any element of an array.
    Item,
}

/// A body type with vectors (`Vec<f32>` fields) at known paths.
pub trait Vectors: DeserializeOwned {
    /// The paths of its vectors, from the top-level object.
    const PATHS: &'static [&'static [Step]];

    /// The vector at `PATHS[path]`, `items` giving the index of each
    /// [`Step::Item`] on the way; `None` if the parsed body has no such
    /// vector.
    fn slot(&mut self, path: usize, items: &[usize]) -> Option<&mut Vec<f32>>;
}

/// A vector read from the text: which path, the array indexes on the way,
/// the values.
struct Found {
    path: usize,
    items: Vec<usize>,
    values: Vec<f32>,
}

/// Parse `body` into `T` with its vectors read here; `None` if the body
/// must be parsed the general way (see the module doc).
pub fn parse<T: Vectors>(body: &[u8]) -> Option<T> {
    thread_local! {
        /// Where each vector is read before it is copied out at its exact
        /// length; kept per thread so its capacity lasts across requests
        /// (growing it from empty was ~4 % of a shard's CPU on upserts).
        static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut scratch = SCRATCH.take();
    let walked = walk(body, T::PATHS, &mut scratch);
    SCRATCH.set(scratch);
    let (rest, found) = walked?;
    let mut parsed: T = serde_json::from_slice(&rest).ok()?;
    for f in found {
        let slot = parsed.slot(f.path, &f.items)?;
        if !slot.is_empty() {
            return None;
        }
        *slot = f.values;
    }
    Some(parsed)
}

/// Where the walk is: inside an object (after a key: its name, raw, and
/// whether the value is next) or an array (the index of the next element).
enum Frame<'a> {
    Object { key: Option<&'a [u8]> },
    Array { next: usize },
}

/// Walk the JSON text: copy it to `rest` except the arrays at `paths`,
/// which become `[]` and are read (through `scratch`) into the returned list. `None` on
/// anything the walk does not follow (the general parse decides).
fn walk<'a>(b: &'a [u8], paths: &[&[Step]], scratch: &mut Vec<f32>) -> Option<(Vec<u8>, Vec<Found>)> {
    let mut cut = Cut { rest: Vec::with_capacity(64), copied: 0, found: Vec::new() };
    let mut stack: Vec<Frame<'a>> = Vec::with_capacity(8);
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    stack.push(Frame::Object { key: None });
    i += 1;
    loop {
        i = skip_ws(b, i);
        let c = *b.get(i)?;
        match stack.last_mut()? {
            Frame::Object { key } if key.is_none() => {
                // A key, or the object's end.
                match c {
                    b'}' => {
                        i += 1;
                        if !close(&mut stack, b, &mut i)? {
                            break;
                        }
                    }
                    b'"' => {
                        let end = string_end(b, i)?;
                        *key = Some(&b[i + 1..end - 1]);
                        i = skip_ws(b, end);
                        if b.get(i) != Some(&b':') {
                            return None;
                        }
                        i += 1;
                        // The key's value, in the same step.
                        let (next, goes_on) = vector_or_value(&mut stack, b, skip_ws(b, i), paths, scratch, &mut cut)?;
                        i = next;
                        if !goes_on {
                            break;
                        }
                    }
                    _ => return None,
                }
            }
            // Not reached: a key's value is read in the same step as the key.
            Frame::Object { .. } => return None,
            Frame::Array { .. } => {
                if c == b']' {
                    i += 1;
                    if !close(&mut stack, b, &mut i)? {
                        break;
                    }
                    continue;
                }
                let (next, goes_on) = vector_or_value(&mut stack, b, i, paths, scratch, &mut cut)?;
                i = next;
                if !goes_on {
                    break;
                }
            }
        }
    }
    cut.rest.extend_from_slice(&b[cut.copied..]);
    Some((cut.rest, cut.found))
}

/// What the walk has made so far: the text with the vectors read replaced
/// by `[]` (bytes `b[copied..]` are still to be copied to `rest`), and the
/// vectors.
struct Cut {
    rest: Vec<u8>,
    copied: usize,
    found: Vec<Found>,
}

/// The value at `b[i]` where the stack's top frame expects one. At one of
/// `paths` it must be an array: it is read (through `scratch`) into
/// `cut.found`, and the text before it and `[]` go to `cut.rest`; any other
/// value is walked by [`value`]. Returns the next position and whether the
/// walk goes on (false: the top-level object ended).
fn vector_or_value<'a>(
    stack: &mut Vec<Frame<'a>>,
    b: &'a [u8],
    i: usize,
    paths: &[&[Step]],
    scratch: &mut Vec<f32>,
    cut: &mut Cut,
) -> Option<(usize, bool)> {
    let Some(path) = matching(stack, paths) else { return value(stack, b, i) };
    if b.get(i) != Some(&b'[') {
        return None;
    }
    scratch.clear();
    let mut end = array(b, i, scratch)?;
    cut.rest.extend_from_slice(&b[cut.copied..i]);
    cut.rest.extend_from_slice(b"[]");
    cut.copied = end;
    cut.found.push(Found { path, items: items_of(stack), values: scratch.clone() });
    let goes_on = after_value(stack, b, &mut end)?;
    Some((end, goes_on))
}

/// The value at `b[i]` where the stack's top frame expects one: a container
/// opens a frame; a scalar or string is skipped, then what follows it is
/// read (`after_value`). Returns the next position and whether the walk
/// goes on (false: the top-level object ended).
fn value<'a>(stack: &mut Vec<Frame<'a>>, b: &'a [u8], mut i: usize) -> Option<(usize, bool)> {
    match *b.get(i)? {
        b'{' => {
            stack.push(Frame::Object { key: None });
            Some((i + 1, true))
        }
        b'[' => {
            stack.push(Frame::Array { next: 0 });
            Some((i + 1, true))
        }
        b'"' => {
            i = string_end(b, i)?;
            let goes_on = after_value(stack, b, &mut i)?;
            Some((i, goes_on))
        }
        _ => {
            // A number or a literal: up to the next delimiter (serde checks
            // what it is).
            while let Some(&c) = b.get(i) {
                if matches!(c, b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t') {
                    break;
                }
                i += 1;
            }
            let goes_on = after_value(stack, b, &mut i)?;
            Some((i, goes_on))
        }
    }
}

/// After a value in the top frame: a `,` (the next member or element) or the
/// frame's end. Returns whether the walk goes on (false: the top-level
/// object ended).
fn after_value(stack: &mut Vec<Frame<'_>>, b: &[u8], i: &mut usize) -> Option<bool> {
    *i = skip_ws(b, *i);
    let c = *b.get(*i)?;
    match stack.last_mut()? {
        Frame::Object { key } => {
            *key = None;
            match c {
                b',' => {
                    *i += 1;
                    // A key must follow, not the end.
                    let j = skip_ws(b, *i);
                    (b.get(j) == Some(&b'"')).then_some(true)
                }
                b'}' => {
                    *i += 1;
                    close(stack, b, i)
                }
                _ => None,
            }
        }
        Frame::Array { next } => {
            *next += 1;
            match c {
                b',' => {
                    *i += 1;
                    let j = skip_ws(b, *i);
                    (!matches!(b.get(j), Some(b']') | None)).then_some(true)
                }
                b']' => {
                    *i += 1;
                    close(stack, b, i)
                }
                _ => None,
            }
        }
    }
}

/// The top frame just ended (its closing byte read): pop it; the value it
/// was is followed by what `after_value` reads. Returns whether the walk
/// goes on (false: the top-level object ended).
fn close(stack: &mut Vec<Frame<'_>>, b: &[u8], i: &mut usize) -> Option<bool> {
    stack.pop();
    if stack.is_empty() {
        return Some(false);
    }
    after_value(stack, b, i)
}

/// Which of `paths` the value about to be read sits at, if any.
fn matching(stack: &[Frame<'_>], paths: &[&[Step]]) -> Option<usize> {
    paths.iter().position(|path| {
        path.len() == stack.len()
            && path.iter().zip(stack).all(|(step, frame)| match (step, frame) {
                (Step::Key(k), Frame::Object { key: Some(raw) }) => raw == &k.as_bytes(),
                (Step::Item, Frame::Array { .. }) => true,
                _ => false,
            })
    })
}

/// The array indexes on the stack (one per [`Step::Item`]).
fn items_of(stack: &[Frame<'_>]) -> Vec<usize> {
    stack
        .iter()
        .filter_map(|f| match f {
            Frame::Array { next } => Some(*next),
            Frame::Object { .. } => None,
        })
        .collect()
}

/// The position after the string starting at `b[i]` (a `"`). A key or
/// string with escapes is walked over correctly; a key with escapes never
/// matches a path (its raw bytes differ), so serde reads what follows it.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// Read the JSON array of numbers starting at `b[i]` (a `[`) into `out`;
/// the position after it, or `None` if it is not one (or holds a number
/// serde_json rejects).
fn array(b: &[u8], mut i: usize, out: &mut Vec<f32>) -> Option<usize> {
    debug_assert_eq!(b.get(i), Some(&b'['));
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        let (v, end) = number(b, i)?;
        out.push(v);
        i = skip_ws(b, end);
        match *b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Powers of ten exact as doubles (10^22 is the largest).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];
/// The largest significand an `f64` holds exactly.
const EXACT_SIGNIFICAND_MAX: u64 = 1 << 53;
/// Significand digits counted before the count stops being exact in a u64.
const DIGITS_MAX: u32 = 19;
/// Exponent digits read here (more: serde reads the number).
const EXPONENT_DIGITS_MAX: usize = 4;

/// Read the digits from `b[i]` on into `significand` (while `digits`, the
/// count so far, stays at most [`DIGITS_MAX`]; the count goes on past it,
/// marking the number inexact here); the position after them. Eight digits
/// at a time while there are eight.
#[inline(always)]
fn digit_run(b: &[u8], mut i: usize, significand: &mut u64, digits: &mut u32) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if !eight_digits(word) {
            break;
        }
        if *digits + 8 <= DIGITS_MAX {
            *significand = *significand * 100_000_000 + eight_digits_value(word);
        }
        *digits += 8;
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if *digits < DIGITS_MAX {
            *significand = *significand * 10 + u64::from(d);
        }
        *digits += 1;
        i += 1;
    }
    i
}

/// Whether the eight bytes of `word` (little-endian) are all ASCII digits.
#[inline(always)]
fn eight_digits(word: u64) -> bool {
    // Each byte is 0x30..=0x39: its high nibble is 3, and adding 6 keeps it 3.
    ((word & 0xF0F0_F0F0_F0F0_F0F0) | (((word.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0) >> 4))
        == 0x3333_3333_3333_3333
}

/// The value of eight ASCII digits (the first byte the most significant),
/// by pairing digits, then pairs, then quadruples.
#[inline(always)]
fn eight_digits_value(word: u64) -> u64 {
    let v = word - 0x3030_3030_3030_3030;
    let v = (v * 10) + (v >> 8);
    ((v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32)))
        .wrapping_add(((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32
}

/// The JSON number at `b[i]` as serde_json reads it into an `f32`, and the
/// position after it; `None` if it is not a JSON number or serde rejects it.
fn number(b: &[u8], mut i: usize) -> Option<(f32, usize)> {
    let start = i;
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut significand: u64 = 0;
    let mut digits: u32 = 0;
    // Integer part: `0` or a non-zero digit and more digits.
    match *b.get(i)? {
        b'0' => {
            i += 1;
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        b'1'..=b'9' => {
            let end = digit_run(b, i, &mut significand, &mut digits);
            i = end;
        }
        _ => return None,
    }
    let mut exponent: i64 = 0;
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        integer = false;
        i += 1;
        let first = i;
        i = digit_run(b, i, &mut significand, &mut digits);
        if i == first {
            return None;
        }
        // Exact only if every digit went into the significand (checked
        // below), so each fraction digit is one power of ten down.
        exponent -= (i - first) as i64;
    }
    let mut exponent_digits_ok = true;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        integer = false;
        i += 1;
        let negative_exponent = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let first = i;
        let mut e: i64 = 0;
        while let Some(&c) = b.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            if i - first < EXPONENT_DIGITS_MAX {
                e = e * 10 + i64::from(d);
            }
            i += 1;
        }
        if i == first {
            return None;
        }
        exponent_digits_ok = i - first <= EXPONENT_DIGITS_MAX;
        exponent += if negative_exponent { -e } else { e };
    }
    let exact = exponent_digits_ok
        && digits <= DIGITS_MAX
        && significand <= EXACT_SIGNIFICAND_MAX
        && (-22..=22).contains(&exponent);
    if !exact {
        // serde_json's own reading of this number, alone: the same code as
        // in the array (`deserialize_f32`), so the same bits or error.
        return serde_json::from_slice::<f32>(&b[start..i]).ok().map(|v| (v, i));
    }
    let v = if integer {
        // serde: a u64 for a non-negative integer, an i64 for a negative
        // one (`-0` a float -0.0), then `as f32`.
        if !negative {
            significand as f32
        } else if significand == 0 {
            -0.0
        } else {
            (-(significand as i64)) as f32
        }
    } else {
        let magnitude = significand as f64;
        let f =
            if exponent >= 0 { magnitude * POW10[exponent as usize] } else { magnitude / POW10[(-exponent) as usize] };
        (if negative { -f } else { f }) as f32
    };
    Some((v, i))
}

#[cfg(test)]
mod tests;
