//! The one integration-test binary: every test starts the real `aionbd`
//! server on 127.0.0.1:0 with an explicit shard count.

mod api;
mod auth;
mod backup;
mod datadir;
mod durability;
mod harness;
mod hnsw;
mod http;
mod ivf;
mod light;
mod nice;
mod notify;
mod quickstart;
mod startup;
mod surgery;
mod tls;
