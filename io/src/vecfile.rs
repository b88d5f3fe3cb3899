//! Dense vector files: texmex `.fvecs` / `.ivecs` (little-endian rows of
//! `i32 dim` + `dim` values) and NumPy `.npy` (2-D, little-endian f4/i4,
//! C order). Parsing is a pure function over bytes.

use std::fmt;
use std::path::Path;

/// A row-major matrix read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix<T> {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<T>,
}

impl<T> Matrix<T> {
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

#[derive(Debug)]
pub enum VecFileError {
    Io(std::io::Error),
    Format(String),
}

impl fmt::Display for VecFileError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            VecFileError::Io(e) => write!(f, "{e}"),
            VecFileError::Format(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for VecFileError {}

fn bad(msg: impl Into<String>) -> VecFileError {
    VecFileError::Format(msg.into())
}

/// Element types a vector file can hold.
pub trait Element: Copy {
    const NPY_DESCR: &'static str;
    fn from_le(b: [u8; 4]) -> Self;
}

impl Element for f32 {
    const NPY_DESCR: &'static str = "<f4";
    fn from_le(b: [u8; 4]) -> Self {
        f32::from_le_bytes(b)
    }
}

impl Element for i32 {
    const NPY_DESCR: &'static str = "<i4";
    fn from_le(b: [u8; 4]) -> Self {
        i32::from_le_bytes(b)
    }
}

/// Parse `.fvecs`/`.ivecs` bytes. Every row must repeat the first row's dim.
pub fn parse_xvecs<T: Element>(bytes: &[u8]) -> Result<Matrix<T>, VecFileError> {
    if bytes.is_empty() {
        return Ok(Matrix { rows: 0, dim: 0, data: Vec::new() });
    }
    if bytes.len() < 4 {
        return Err(bad("file shorter than one row header"));
    }
    let dim = i32::from_le_bytes(bytes[0..4].try_into().unwrap());
    if dim <= 0 {
        return Err(bad(format!("row 0 has dimension {dim}")));
    }
    let dim = dim as usize;
    let row_bytes = 4 * (dim + 1);
    if !bytes.len().is_multiple_of(row_bytes) {
        return Err(bad(format!("file size {} is not a multiple of the row size {row_bytes}", bytes.len())));
    }
    let rows = bytes.len() / row_bytes;
    let mut data = Vec::with_capacity(rows * dim);
    for (r, row) in bytes.chunks_exact(row_bytes).enumerate() {
        let d = i32::from_le_bytes(row[0..4].try_into().unwrap());
        if d as usize != dim {
            return Err(bad(format!("row {r} has dimension {d}, row 0 has {dim}")));
        }
        data.extend(row[4..].chunks_exact(4).map(|c| T::from_le(c.try_into().unwrap())));
    }
    Ok(Matrix { rows, dim, data })
}

/// Parse a 2-D (or 1-D) `.npy` array of the element type, version 1-3.
pub fn parse_npy<T: Element>(bytes: &[u8]) -> Result<Matrix<T>, VecFileError> {
    if bytes.len() < 10 || &bytes[0..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (missing magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad("truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(".npy header is not text"))?;
    if !header.contains(&format!("'descr': '{}'", T::NPY_DESCR)) {
        return Err(bad(format!(".npy dtype must be {} (header: {})", T::NPY_DESCR, header.trim())));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad(".npy arrays in Fortran order are not supported"));
    }
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad(".npy header has no shape"))?;
    let dims: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(format!("bad .npy shape '{shape_text}'"))))
        .collect::<Result<_, _>>()?;
    let (rows, dim) = match dims.as_slice() {
        [n] => (1, *n),
        [r, d] => (*r, *d),
        _ => return Err(bad(format!(".npy array must be 1-D or 2-D, shape is ({shape_text})"))),
    };
    let body = &bytes[start + header_len..];
    if body.len() != rows * dim * 4 {
        return Err(bad(format!(".npy body has {} bytes, shape needs {}", body.len(), rows * dim * 4)));
    }
    let data = body.chunks_exact(4).map(|c| T::from_le(c.try_into().unwrap())).collect();
    Ok(Matrix { rows, dim, data })
}

/// Read a vector file, choosing the format by extension (`.npy` or xvecs).
pub fn read<T: Element>(path: &Path) -> Result<Matrix<T>, VecFileError> {
    let bytes = std::fs::read(path).map_err(VecFileError::Io)?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => parse_npy(&bytes),
        _ => parse_xvecs(&bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fvecs(rows: &[Vec<f32>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            out.extend((r.len() as i32).to_le_bytes());
            for v in r {
                out.extend(v.to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn fvecs_round_trip_and_errors() {
        let m = parse_xvecs::<f32>(&fvecs(&[vec![1.0, 2.0], vec![3.0, 4.0]])).unwrap();
        assert_eq!((m.rows, m.dim), (2, 2));
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert!(parse_xvecs::<f32>(&fvecs(&[vec![1.0, 2.0], vec![3.0]])).is_err());
        assert!(parse_xvecs::<f32>(&[1, 0, 0]).is_err());
    }

    #[test]
    fn npy_reads_2d_f32() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        for v in [1f32, 2., 3., 4., 5., 6.] {
            bytes.extend(v.to_le_bytes());
        }
        let m = parse_npy::<f32>(&bytes).unwrap();
        assert_eq!((m.rows, m.dim), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
        assert!(parse_npy::<i32>(&bytes).is_err());
    }
}
