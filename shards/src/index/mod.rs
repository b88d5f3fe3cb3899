//! The approximate indexes of a partition's points: IVF lists ([`ivf`]),
//! the HNSW graph ([`hnsw`]), the calibration tables that map an index
//! setting to recall and cost ([`calib`]), and the scalar codes
//! (8-bit for IVF, 4-bit for the graph: [`sq8`]) the indexes score with
//! before re-ranking.

pub mod calib;
pub mod hnsw;
pub mod ivf;
pub mod sq8;
