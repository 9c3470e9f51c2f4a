//! Parquet encoding: polars' own writer, with this project's settings (compression, statistics,
//! and the plain Arrow schema readers need).

use std::io::Write;

use polars::prelude::*;

use super::Compression;

/// Encodes a frame as Parquet with statistics into `file` (a file on disk, or a buffer that
/// becomes one object).
pub fn write_parquet<W: Write>(
    df: &mut DataFrame,
    file: W,
    compression: Compression,
) -> PolarsResult<u64> {
    polars_writer(df, file, compression)?.finish(df)
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

    /// A frame as the transform builds one reads back as written, by polars and by an
    /// independent reader (arrow-rs), with the plain Arrow types in the embedded schema.
    #[test]
    fn a_built_frame_reads_back_with_plain_types() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let n = 300;
        let voice = vec!["VOICE".to_string()];
        let mut df = FrameBuilder::new(n)
            .str(
                "agent",
                (0..n).map(|i| Some(["a1", "a-longer-agent-id-2"][i % 2])),
            )
            .str("label", (0..n).map(|i| (i % 3 != 0).then_some("Lunch")))
            .list_str(
                "available_for",
                (0..n).map(|i| (i % 4 != 0).then_some(voice.as_slice())),
            )
            .ts("at", (0..n).map(|i| Some(1_700_000_000_000 + i as i64)))
            .finish()
            .unwrap();
        for c in [Compression::Zstd, Compression::Snappy, Compression::None] {
            let mut bytes = Vec::new();
            write_parquet(&mut df, &mut bytes, c).unwrap();
            let back = read_parquet_bytes(bytes.clone().into()).unwrap();
            assert!(back.equals_missing(&df), "{c:?}: read back differs");
            if c != Compression::Zstd {
                // The test reader is built with zstd only (the datasets' default).
                continue;
            }
            let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
            assert_eq!(reader.get_row_iter(None).unwrap().count(), n);
            let meta = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(
                &bytes::Bytes::from(bytes),
                Default::default(),
            )
            .unwrap();
            let types: Vec<String> = meta
                .schema()
                .fields()
                .iter()
                .map(|f| f.data_type().to_string())
                .collect();
            assert_eq!(types[0], "Utf8", "{types:?}");
            assert!(
                types[2].starts_with("List(") && types[2].contains("Utf8"),
                "{types:?}"
            );
        }
    }
}
