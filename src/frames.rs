//! The one module that speaks polars: building frames from records, reading them back, and
//! Parquet encoding. Everything else works with plain Rust records.

use std::path::Path;

use polars::prelude::*;

use crate::time::Ms;

/// How Parquet pages are compressed (`output.compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Snappy,
    None,
}

pub use polars::prelude::DataFrame;

mod write;
pub use write::{write_parquet, write_parquet_file};

/// Builds a frame column by column; every column must have `height` values.
pub struct FrameBuilder {
    height: usize,
    cols: Vec<Column>,
}

impl FrameBuilder {
    pub fn new(height: usize) -> FrameBuilder {
        FrameBuilder {
            height,
            cols: Vec::new(),
        }
    }

    /// A string column whose repeated values share their bytes (see `shared_strings`).
    pub fn str<'a>(mut self, name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Self {
        let ca = StringChunked::with_chunk(name.into(), shared_strings(self.height, values));
        self.cols.push(ca.into_column());
        self
    }

    /// `timestamp[ms, UTC]`.
    pub fn ts(mut self, name: &str, values: impl Iterator<Item = Option<Ms>>) -> Self {
        let ca = Int64Chunked::from_iter_options(name.into(), values);
        self.cols.push(
            ca.into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
                .into_column(),
        );
        self
    }

    pub fn f64(mut self, name: &str, values: impl Iterator<Item = Option<f64>>) -> Self {
        let ca = Float64Chunked::from_iter_options(name.into(), values);
        self.cols.push(ca.into_column());
        self
    }

    pub fn i64(mut self, name: &str, values: impl Iterator<Item = Option<i64>>) -> Self {
        let ca = Int64Chunked::from_iter_options(name.into(), values);
        self.cols.push(ca.into_column());
        self
    }

    pub fn bool(mut self, name: &str, values: impl Iterator<Item = Option<bool>>) -> Self {
        let ca: BooleanChunked = values.collect();
        self.cols.push(ca.with_name(name.into()).into_column());
        self
    }

    /// `list<string>`, built in one list builder (one Series per row cost a day's events
    /// several allocations each, and a builder sized from a guess of 12 MiB).
    pub fn list_str<'a>(
        mut self,
        name: &str,
        values: impl Iterator<Item = Option<&'a [String]>>,
    ) -> Self {
        let mut b = ListStringChunkedBuilder::new(name.into(), self.height, self.height);
        for v in values {
            match v {
                Some(v) => b.append_values_iter(v.iter().map(String::as_str)),
                None => b.append_null(),
            }
        }
        self.cols.push(b.finish().into_column());
        self
    }

    pub fn finish(self) -> PolarsResult<DataFrame> {
        DataFrame::new(self.height, self.cols)
    }
}

/// A string array in which a value longer than a view's inline 12 bytes is stored once however
/// many rows name it: every value that is one allocation on every row, and every equal value
/// unless the column starts as a column of distinct ids (which stops comparing bytes).
/// Most of a day's string columns repeat a few values on every row (agent ids and emails, event
/// types, labels, tasks, states); polars' own collect copies each row's bytes into buffers that
/// grow as they fill, fresh memory every day that the allocator gives back at once and the
/// kernel faults in again. The views are sized from `height` once and the bytes copied into
/// buffers of their exact size. Parquet encodes values, not buffers: the files are byte for
/// byte those polars' writer makes of polars' collect (test).
fn shared_strings<'a>(
    height: usize,
    values: impl Iterator<Item = Option<&'a str>>,
) -> polars_arrow::array::Utf8ViewArray {
    use polars_arrow::array::Utf8ViewArray;
    use polars_arrow::array::View;
    use polars_arrow::bitmap::MutableBitmap;
    use polars_buffer::Buffer;

    let mut views: Vec<View> = Vec::with_capacity(height);
    let mut validity: Option<MutableBitmap> = None;
    // Distinct long values by the buffer (index) that will hold them, in the order first seen.
    let mut distinct: Vec<Vec<&'a str>> = vec![Vec::new()];
    // Distinct long values by their bytes, while that pays (see below).
    const SAMPLE: usize = 512;
    let mut seen: Option<rustc_hash::FxHashMap<&'a str, View>> = Some(Default::default());
    let mut long_values = 0usize;
    let mut by_address = [(std::ptr::null::<u8>(), 0usize, View::default()); 64];
    let mut offset = 0usize;
    for v in values {
        let Some(v) = v else {
            validity
                .get_or_insert_with(|| {
                    let mut b = MutableBitmap::with_capacity(height);
                    b.extend_constant(views.len(), true);
                    b
                })
                .push(false);
            views.push(View::default());
            continue;
        };
        if let Some(b) = validity.as_mut() {
            b.push(true);
        }
        if v.len() <= View::MAX_INLINE_SIZE as usize {
            views.push(View::new_inline(v.as_bytes()));
            continue;
        }
        long_values += 1;
        // Most repeated values are one allocation named on every row (a static name, a label,
        // an email from the agents table): found by address before their bytes are hashed.
        let slot = (v.as_ptr() as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 6);
        let (addr, len, view) = by_address[slot];
        if addr == v.as_ptr() && len == v.len() {
            views.push(view);
            continue;
        }
        if let Some(&view) = seen.as_ref().and_then(|m| m.get(v)) {
            by_address[slot] = (v.as_ptr(), v.len(), view);
            views.push(view);
            continue;
        }
        // A view's offset is a u32: a buffer that would pass 4 GiB starts another.
        if offset + v.len() > u32::MAX as usize {
            distinct.push(Vec::new());
            offset = 0;
        }
        let view = View::new_from_bytes(v.as_bytes(), (distinct.len() - 1) as u32, offset as u32);
        distinct.last_mut().expect("one buffer at least").push(v);
        offset += v.len();
        views.push(view);
        by_address[slot] = (v.as_ptr(), v.len(), view);
        if let Some(m) = seen.as_mut() {
            m.insert(v, view);
            // A column whose first SAMPLE long values are all different is taken for a column
            // of ids (event ids), where the map only costs. A column of 2,000 agents' ids in
            // random order repeats dozens of times within its first 512 values; the map keeps
            // an entry per distinct value, far smaller than the bytes stored for it.
            if m.len() == SAMPLE && long_values == SAMPLE {
                seen = None;
            }
        }
    }
    // No buffer at all when every value was inline or null, as polars' own arrays have.
    if offset == 0 && distinct.len() == 1 {
        distinct.clear();
    }
    let buffers: Vec<Buffer<u8>> = distinct
        .iter()
        .map(|vs| {
            let mut b = Vec::with_capacity(vs.iter().map(|v| v.len()).sum());
            for v in vs {
                b.extend_from_slice(v.as_bytes());
            }
            Buffer::from(b)
        })
        .collect();
    // Every non-inline view was made by `View::new_from_bytes` from the bytes of a `&str` at
    // the offset and in the buffer where the loop above copies those same bytes, and the
    // validity has one bit per view: the checked constructor cannot refuse them.
    Utf8ViewArray::try_new(
        ArrowDataType::Utf8View,
        Buffer::from(views),
        Buffer::from(buffers),
        validity.map(Into::into),
    )
    .expect("views made from &str agree with their buffers")
}

/// Typed access to a frame read back from Parquet.
pub struct FrameReader<'a>(pub &'a DataFrame);

impl<'a> FrameReader<'a> {
    fn series(&self, name: &str) -> PolarsResult<&Series> {
        Ok(self.0.column(name)?.as_materialized_series())
    }

    pub fn height(&self) -> usize {
        self.0.height()
    }

    pub fn str(&self, name: &str) -> PolarsResult<Vec<Option<String>>> {
        Ok(self.strs(name)?.map(|v| v.map(str::to_string)).collect())
    }

    /// A string column borrowed from the frame: rows are copied only into what keeps them,
    /// and columns parsed into an enum are not copied at all.
    pub fn strs(&self, name: &str) -> PolarsResult<impl Iterator<Item = Option<&'a str>> + 'a> {
        let s: &'a Series = self.0.column(name)?.as_materialized_series();
        Ok(s.str()?.iter())
    }

    pub fn ts(&self, name: &str) -> PolarsResult<Vec<Option<Ms>>> {
        let s = self.series(name)?.cast(&DataType::Int64)?;
        Ok(s.i64()?.iter().collect())
    }

    pub fn f64(&self, name: &str) -> PolarsResult<Vec<Option<f64>>> {
        Ok(self.series(name)?.f64()?.iter().collect())
    }

    pub fn i64(&self, name: &str) -> PolarsResult<Vec<Option<i64>>> {
        Ok(self.series(name)?.i64()?.iter().collect())
    }

    pub fn bool(&self, name: &str) -> PolarsResult<Vec<Option<bool>>> {
        Ok(self.series(name)?.bool()?.iter().collect())
    }

    pub fn list_str(&self, name: &str) -> PolarsResult<Vec<Option<Vec<String>>>> {
        let mut out = Vec::with_capacity(self.height());
        // One reused Series for every row, not a new one each.
        for row in self.series(name)?.list()?.amortized_iter() {
            out.push(match row {
                None => None,
                Some(s) => Some(
                    s.as_ref()
                        .str()?
                        .iter()
                        .map(|x| x.unwrap_or("").to_string())
                        .collect(),
                ),
            });
        }
        Ok(out)
    }
}

pub fn read_parquet(path: &Path) -> PolarsResult<DataFrame> {
    let f = std::fs::File::open(path)?;
    read_parquet_file(f)
}

pub fn read_parquet_file(f: std::fs::File) -> PolarsResult<DataFrame> {
    ParquetReader::new(f).finish()
}

/// Rows in a Parquet file, from its footer (no data is read).
pub fn parquet_rows(path: &Path) -> PolarsResult<usize> {
    let f = std::fs::File::open(path)?;
    ParquetReader::new(f).num_rows()
}

/// Decodes a Parquet file fetched whole (an object).
pub fn read_parquet_bytes(bytes: bytes::Bytes) -> PolarsResult<DataFrame> {
    ParquetReader::new(std::io::Cursor::new(bytes)).finish()
}

/// A required column's value at a row (0-based) of a frame this pipeline wrote (raw zone,
/// curated datasets): a null or an unknown value there is damage to report, naming column and
/// row, never a default to carry on with.
pub struct Need(pub usize);

impl Need {
    pub fn some<T>(&self, column: &str, v: Option<T>) -> PolarsResult<T> {
        v.ok_or_else(|| polars_err!(ComputeError: "row {}: `{column}` is null", self.0 + 1))
    }

    pub fn parsed<T, S: AsRef<str>>(
        &self,
        column: &str,
        v: Option<S>,
        parse: fn(&str) -> Option<T>,
    ) -> PolarsResult<T> {
        let v = self.some(column, v)?;
        let v = v.as_ref();
        parse(v).ok_or_else(|| {
            polars_err!(
                ComputeError: "row {}: `{column}` is `{v}`, which no stage writes", self.0 + 1
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gladly_wfm_sim::rng::Rng;

    fn plain(rows: &[Option<&str>]) -> DataFrame {
        let ca: StringChunked = rows.iter().copied().collect();
        DataFrame::new(rows.len(), vec![ca.with_name("v".into()).into_column()]).unwrap()
    }

    fn parquet(df: &mut DataFrame) -> Vec<u8> {
        let mut out = Vec::new();
        write_parquet(df, &mut out, Compression::Zstd).unwrap();
        out
    }

    /// polars' own writer, with the same settings (for a column without shared views, whose
    /// dictionary `write_parquet` would build with a value more than once).
    fn polars_parquet(df: &mut DataFrame) -> Vec<u8> {
        let mut out = Vec::new();
        write::polars_writer(df, &mut out, Compression::Zstd)
            .unwrap()
            .finish(df)
            .unwrap();
        out
    }

    fn buffer_len(df: &DataFrame) -> usize {
        let ca = df.column("v").unwrap().str().unwrap();
        ca.downcast_iter().map(|a| a.total_buffer_len()).sum()
    }

    /// Nulls, inline values, long values repeated on many rows (the same allocation each time,
    /// equal copies, or a shorter value at the same address), and long values seen once: the
    /// column built with shared bytes holds the same values as polars' own collect, encodes to
    /// the Parquet bytes polars' writer makes of that collect, and stores each distinct long
    /// value once. Then a column of distinct ids (the byte map given up after 512) followed by
    /// one allocation on many rows: that value is still stored once. (Whether the map was given
    /// up shows in time, not here.)
    #[test]
    fn shared_strings_are_the_values_and_the_file_of_a_plain_collect() {
        let mut rng = Rng::derive(17, &["shared-strings"]);
        let labels: Vec<String> = (0..5)
            .map(|i| format!("Agent Status – label number {i}"))
            .collect();
        let tail = "one allocation named on every row".to_string();
        let long_bytes = |rows: &[Option<&str>], dedup: bool| -> usize {
            let mut v: Vec<&str> = rows
                .iter()
                .flatten()
                .copied()
                .filter(|v| v.len() > 12)
                .collect();
            if dedup {
                v.sort_unstable();
                v.dedup();
            }
            v.iter().map(|v| v.len()).sum()
        };
        for n in [0usize, 1, 7, 600, 3000] {
            // What each row is (`range` includes both ends): 0 null, 1 inline, 2–4 a label's
            // own allocation, 5–6 a copy of a label, 7 the first 13 bytes of a label's
            // allocation (same address, shorter), 8–9 a long value of its own.
            let kinds: Vec<(i64, usize)> = (0..n)
                .map(|_| (rng.range(0, 9), rng.range(0, 4) as usize))
                .collect();
            let copies: Vec<String> = kinds
                .iter()
                .map(|&(k, l)| match k {
                    1 => ["EMAIL", "CHAT", ""][l % 3].to_string(),
                    5 | 6 => labels[l].clone(),
                    8 | 9 => format!("{}-seen-once", rng.id()),
                    _ => String::new(),
                })
                .collect();
            let rows: Vec<Option<&str>> = kinds
                .iter()
                .zip(&copies)
                .map(|(&(k, l), c)| match k {
                    0 => None,
                    2..=4 => Some(labels[l].as_str()),
                    7 => Some(&labels[l][..13]),
                    _ => Some(c.as_str()),
                })
                .collect();
            let ids: Vec<String> = (0..n).map(|_| rng.id()).collect();
            let id_rows: Vec<Option<&str>> = ids
                .iter()
                .map(|s| Some(s.as_str()))
                .chain((0..n / 2).map(|_| Some(tail.as_str())))
                .collect();
            let id_bytes = long_bytes(&id_rows[..n], false) + if n > 1 { tail.len() } else { 0 };
            for (rows, stored) in [(&rows, long_bytes(&rows, true)), (&id_rows, id_bytes)] {
                let mut shared = FrameBuilder::new(rows.len())
                    .str("v", rows.iter().copied())
                    .finish()
                    .unwrap();
                let mut reference = plain(rows);
                assert!(shared.equals_missing(&reference), "{n} rows");
                assert_eq!(
                    parquet(&mut shared),
                    polars_parquet(&mut reference),
                    "{n} rows"
                );
                assert_eq!(buffer_len(&shared), stored, "{n} rows");
            }
        }
    }
}
