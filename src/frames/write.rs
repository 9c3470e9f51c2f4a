//! Parquet encoding: polars' writer, with the dictionaries of string columns built from the
//! columns' shared views instead of by hashing every value's bytes.
//!
//! Why: polars' writer decides per string column whether to dictionary-encode it by estimating
//! its cardinality (a HyperLogLog over every value), then builds the dictionary by hashing and
//! comparing every value's bytes — about a tenth of the transform's CPU. The frames this
//! project writes are built by `FrameBuilder::str`, where equal values share one view (equal
//! bytes at one address; short values are inline in their view), so the view itself identifies
//! the value: where equal values share a view, a dictionary keyed by the 16-byte view gives the
//! same keys in the same order (first occurrence) as polars' own, and so the same pages (test).
//! Where they do not (a column read back or stacked from two frames, or a column that
//! `FrameBuilder::str` took for distinct ids and stopped comparing), the dictionary names a
//! value more than once — a larger page, read back the same (Parquet allows it) — and the
//! three-in-four rule below counts views, so such a column may be written plain where polars
//! would use a dictionary. Equal views always hold equal bytes, so a key is never wrong.

use std::io::Write;

use polars::prelude::*;
use polars_arrow::array::{Array, DictionaryArray, PrimitiveArray, Utf8ViewArray};
use polars_arrow::datatypes::IntegerType;
use polars_parquet::write::{
    array_to_columns, get_dtype_encoding, CompressedPage, Compressor, DynIter,
    DynStreamingIterator, Encoding, FallibleStreamingIterator, ParquetType, Version, WriteOptions,
};

use super::Compression;

/// polars' default row group: a frame longer than this goes through polars' writer unchanged.
const ROW_GROUP: usize = 512 * 512;

/// Encodes a frame as Parquet with statistics into `file` (a file on disk, or a buffer that
/// becomes one object).
pub fn write_parquet<W: Write>(
    df: &mut DataFrame,
    file: W,
    compression: Compression,
) -> PolarsResult<u64> {
    let writer = polars_writer(df, file, compression)?;
    if df.height() == 0 || df.height() > ROW_GROUP {
        return writer.finish(df);
    }
    // One row group of one chunk per column, as polars' `finish` writes a frame of this size.
    df.rechunk_mut_par();
    let mut batched = writer.batched(df.schema())?;
    // The options polars' writer derives from the same settings (`materialize_options`).
    let options = WriteOptions {
        statistics: StatisticsOptions::default(),
        compression: parquet_compression(compression)?.into(),
        version: Version::V1,
        data_page_size: None,
    };
    let fields = batched.parquet_schema().fields().to_vec();
    let mut columns = Vec::with_capacity(fields.len());
    for (col, field) in df.columns().iter().zip(fields) {
        columns.extend(column_pages(col, field, options)?);
    }
    batched
        .get_writer()
        .lock()
        .map_err(|_| polars_err!(ComputeError: "the Parquet writer was poisoned"))?
        .write(df.height() as u64, DynIter::new(columns.into_iter()))?;
    batched.finish()
}

fn parquet_compression(compression: Compression) -> PolarsResult<ParquetCompression> {
    Ok(match compression {
        // Level 1: most of zstd's ratio at a fraction of the default level's CPU.
        Compression::Zstd => {
            ParquetCompression::Zstd(Some(polars_parquet::write::ZstdLevel::try_new(1)?))
        }
        Compression::Snappy => ParquetCompression::Snappy,
        Compression::None => ParquetCompression::Uncompressed,
    })
}

/// polars' writer with this project's settings: compression, the plain Arrow schema, and
/// min, max and null counts per column chunk (what readers prune with; distinct counts would
/// hash every value for little use).
pub(super) fn polars_writer<W: Write>(
    df: &DataFrame,
    file: W,
    compression: Compression,
) -> PolarsResult<ParquetWriter<W>> {
    Ok(ParquetWriter::new(file)
        .with_compression(parquet_compression(compression)?)
        .with_key_value_metadata(Some(plain_arrow_schema(df)))
        .with_statistics(StatisticsOptions::default()))
}

type ColumnPages = PolarsResult<DynStreamingIterator<'static, CompressedPage, PolarsError>>;

/// The compressed pages of one column (one per leaf), as polars' writer makes them, with a
/// string column's dictionary from its views.
fn column_pages(
    col: &Column,
    field: ParquetType,
    options: WriteOptions,
) -> PolarsResult<Vec<ColumnPages>> {
    let array = col
        .as_materialized_series()
        .to_arrow(0, CompatLevel::newest());
    let mut encodings = get_dtype_encoding(array.dtype());
    let array = match array.as_any().downcast_ref::<Utf8ViewArray>() {
        Some(strings) => match view_dictionary(strings) {
            Some(dictionary) => dictionary.boxed(),
            None => {
                // Mostly distinct: polars' writer falls back to plain for these too.
                encodings = vec![Encoding::Plain];
                array
            }
        },
        None => array,
    };
    let pages = array_to_columns(array, field, options, &encodings)?;
    Ok(pages
        .into_iter()
        .map(|pages| {
            let compressed = Compressor::new_from_vec(
                pages.map(|page| {
                    page.map_err(|e| {
                        polars_parquet::read::ParquetError::FeatureNotSupported(e.to_string())
                    })
                }),
                options.compression,
                vec![],
            )
            .map_err(PolarsError::from);
            Ok(DynStreamingIterator::new(compressed))
        })
        .collect())
}

/// A dictionary of `strings` keyed by view, keys in order of first occurrence; `None` when more
/// than three values in four are distinct over more than 128 rows (polars' own rule, on its
/// estimate of the distinct count): plain encoding is smaller then.
fn view_dictionary(strings: &Utf8ViewArray) -> Option<DictionaryArray<u32>> {
    let n = strings.len();
    let mut index: rustc_hash::FxHashMap<u128, u32> = Default::default();
    let mut first_rows: Vec<usize> = Vec::new();
    let mut keys: Vec<u32> = Vec::with_capacity(n);
    let validity = strings.validity();
    for (row, view) in strings.views().iter().enumerate() {
        if validity.is_some_and(|v| !v.get_bit(row)) {
            keys.push(0); // masked by the validity
            continue;
        }
        let next = first_rows.len() as u32;
        let key = *index.entry(view.as_u128()).or_insert_with(|| {
            first_rows.push(row);
            next
        });
        keys.push(key);
        if n > 128 && first_rows.len() * 4 > n * 3 {
            return None;
        }
    }
    let values = Utf8ViewArray::from_slice_values(
        first_rows
            .iter()
            .map(|&row| strings.value(row))
            .collect::<Vec<_>>(),
    );
    let keys = PrimitiveArray::<u32>::new(ArrowDataType::UInt32, keys.into(), validity.cloned());
    let dtype = ArrowDataType::Dictionary(
        IntegerType::UInt32,
        Box::new(ArrowDataType::Utf8View),
        false,
    );
    // Every key indexes `values`: it was handed out as `first_rows` grew.
    DictionaryArray::try_new(dtype, keys, values.boxed()).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{read_parquet_bytes, FrameBuilder};
    use gladly_wfm_sim::rng::Rng;

    fn ours(df: &mut DataFrame, compression: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        write_parquet(df, &mut out, compression).unwrap();
        out
    }

    fn polars_own(df: &mut DataFrame, compression: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        polars_writer(df, &mut out, compression)
            .unwrap()
            .finish(df)
            .unwrap();
        out
    }

    /// The values an independent reader (arrow-rs' `parquet` crate) finds, row by row.
    fn read_by_arrow_rs(bytes: Vec<u8>) -> Vec<String> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect()
    }

    /// A frame as the transform builds one: ids repeated (one allocation on many rows, and equal
    /// copies), short inline values, nulls, a column of ids seen once, lists, times, numbers.
    fn built(rng: &mut Rng, n: usize) -> DataFrame {
        let agents: Vec<String> = (0..5).map(|i| format!("agent-{i}-{}", rng.id())).collect();
        let rows: Vec<(usize, i64, String, String)> = (0..n)
            .map(|_| {
                let a = rng.range(0, 4) as usize;
                (
                    a,
                    rng.range(0, 5),
                    agents[a].clone(),
                    format!("event-{}", rng.id()),
                )
            })
            .collect();
        let label = |k: i64| match k {
            0 => None,
            1 => Some("EMAIL"),
            2 => Some(""),
            3 => Some("Agent Status – Away: Lunch"),
            _ => Some("CHAT"),
        };
        let lists: Vec<Vec<String>> = rows
            .iter()
            .map(|r| vec![agents[r.0].clone(), "VOICE".to_string()])
            .collect();
        FrameBuilder::new(n)
            .str("agent", rows.iter().map(|r| Some(agents[r.0].as_str())))
            .str("agent_copy", rows.iter().map(|r| Some(r.2.as_str())))
            .str("label", rows.iter().map(|r| label(r.1)))
            .str("event_id", rows.iter().map(|r| Some(r.3.as_str())))
            .list_str(
                "available_for",
                rows.iter()
                    .zip(&lists)
                    .map(|(r, l)| (r.1 > 0).then_some(l.as_slice())),
            )
            .ts(
                "at",
                rows.iter()
                    .map(|r| (r.1 != 2).then_some(1_700_000_000_000 + r.1)),
            )
            .i64("n", rows.iter().map(|r| Some(r.1)))
            .finish()
            .unwrap()
    }

    /// The dictionaries from views give the very file polars' writer makes (the same keys in the
    /// same order, the same choice of dictionary or plain), for every compression, at sizes on
    /// both sides of polars' 128-row rule; and the file reads back as the frame.
    #[test]
    fn built_frames_encode_to_polars_own_bytes() {
        let mut rng = Rng::derive(5, &["parquet-writer"]);
        for n in [1usize, 7, 128, 129, 600, 3000] {
            let df = built(&mut rng, n);
            for c in [Compression::Zstd, Compression::Snappy, Compression::None] {
                let bytes = ours(&mut df.clone(), c);
                assert_eq!(bytes, polars_own(&mut df.clone(), c), "{n} rows, {c:?}");
                let back = read_parquet_bytes(bytes.into()).unwrap();
                assert!(
                    back.equals_missing(&df),
                    "{n} rows, {c:?}: read back differs"
                );
            }
        }
    }

    /// A frame whose equal values are separate views (polars' own collect, then two frames
    /// stacked) has a dictionary that names a value more than once: the values read back, by
    /// polars and by arrow-rs, are the frame's.
    #[test]
    fn unshared_equal_values_read_back_as_written() {
        let long = [
            "a value longer than twelve bytes",
            "another long value, repeated",
        ];
        let ca: StringChunked = (0..400)
            .map(|i| (i % 7 != 0).then_some(long[i % 2]))
            .collect();
        let plain = DataFrame::new(400, vec![ca.with_name("v".into()).into_column()]).unwrap();
        let mut rng = Rng::derive(6, &["parquet-writer"]);
        let mut stacked = built(&mut rng, 300);
        stacked.vstack_mut(&built(&mut rng, 300)).unwrap();
        for df in [plain, stacked] {
            let bytes = ours(&mut df.clone(), Compression::Zstd);
            let back = read_parquet_bytes(bytes.clone().into()).unwrap();
            assert!(back.equals_missing(&df), "read back by polars differs");
            assert_eq!(
                read_by_arrow_rs(bytes),
                read_by_arrow_rs(polars_own(&mut df.clone(), Compression::Zstd)),
                "read back by arrow-rs differs"
            );
        }
    }

    /// Past one row group the frame is polars' writer's alone.
    #[test]
    fn frames_past_a_row_group_are_polars_own() {
        let n = ROW_GROUP + 1;
        let mut df = FrameBuilder::new(n)
            .str("v", (0..n).map(|i| Some(["x", "y"][i % 2])))
            .finish()
            .unwrap();
        let bytes = ours(&mut df.clone(), Compression::Zstd);
        assert_eq!(bytes, polars_own(&mut df, Compression::Zstd));
    }
}
