//! The one module that speaks polars: building frames from records, reading them back, and
//! Parquet encoding. Everything else works with plain Rust records.

use std::io::Write;
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

    pub fn str<'a>(mut self, name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Self {
        let ca: StringChunked = values.collect();
        self.cols.push(ca.with_name(name.into()).into_column());
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

/// Encodes a frame as Parquet with statistics into `file` (a file on disk, or a buffer that
/// becomes one object).
pub fn write_parquet<W: std::io::Write>(
    df: &mut DataFrame,
    file: W,
    compression: Compression,
) -> PolarsResult<u64> {
    let c = match compression {
        // Level 1: most of zstd's ratio at a fraction of the default level's CPU.
        Compression::Zstd => {
            ParquetCompression::Zstd(Some(polars_parquet::write::ZstdLevel::try_new(1)?))
        }
        Compression::Snappy => ParquetCompression::Snappy,
        Compression::None => ParquetCompression::Uncompressed,
    };
    ParquetWriter::new(file)
        .with_compression(c)
        .with_key_value_metadata(Some(plain_arrow_schema(df)))
        // min, max and null counts per column chunk (what readers prune with); distinct counts
        // would hash every value for little use.
        .with_statistics(StatisticsOptions::default())
        .finish(df)
}

/// `write_parquet` into a file through a buffer: polars' writer hands its sink every page
/// header and page on its own, and unbuffered a 90-day transform made 395 k `write` calls.
pub fn write_parquet_file(
    df: &mut DataFrame,
    file: &mut std::fs::File,
    compression: Compression,
) -> PolarsResult<u64> {
    let mut sink = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let n = write_parquet(df, &mut sink, compression)?;
    // Flushed here so a failed write is this call's error, not lost in a drop.
    sink.flush()?;
    Ok(n)
}

/// The write buffer of one Parquet file: a day's partition is a few hundred KiB to a few MiB.
const WRITE_BUFFER: usize = 1 << 20;

/// The Arrow schema embedded in every file (`ARROW:schema`), with plain types: polars would
/// embed its in-memory view types (`string_view`, `large_list<string_view>`), which pandas'
/// default backend and pyarrow before 14 cannot read (DESIGN §7). Readers cast the stored
/// byte arrays to the hinted type; the data pages are the same either way.
fn plain_arrow_schema(df: &DataFrame) -> KeyValueMetadata {
    fn plain(dt: &ArrowDataType) -> ArrowDataType {
        match dt {
            ArrowDataType::Utf8View | ArrowDataType::LargeUtf8 => ArrowDataType::Utf8,
            ArrowDataType::BinaryView | ArrowDataType::LargeBinary => ArrowDataType::Binary,
            ArrowDataType::List(f) | ArrowDataType::LargeList(f) => {
                ArrowDataType::List(Box::new(f.with_dtype(plain(&f.dtype))))
            }
            other => other.clone(),
        }
    }
    let schema: ArrowSchema = df
        .schema()
        .to_arrow(CompatLevel::newest())
        .iter_values()
        .map(|f| (f.name.clone(), f.with_dtype(plain(&f.dtype))))
        .collect();
    let kv = polars_parquet::write::schema_to_metadata_key(&schema);
    KeyValueMetadata::from_static(vec![(kv.key, kv.value.unwrap_or_default())])
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
