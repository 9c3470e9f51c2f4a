//! Load: curated datasets → the WFM. (The Parquet itself is written by `storage`.)

pub mod push;
