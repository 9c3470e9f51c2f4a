//! Transform: raw zone → curated datasets. Labels, rule matching, segments; a pure function of
//! the raw zone and the pipeline file.

pub mod datasets;
pub mod labels;
pub mod rules;
pub mod segments;
pub mod stage;
pub mod workstreams;
