//! Reading a Reports API CSV body as it streams from disk: rows keyed by header name, never by
//! position. Survives a BOM, blank lines before the header, quoted commas and newlines, an empty
//! body (no header, no rows), rows shorter than the header (the missing cells are absent so the
//! caller names the column), and invalid UTF-8 in a cell (that row alone is unreadable).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

/// The header of a report and where each named column is.
pub struct Columns {
    pub header: Vec<String>,
    index: HashMap<String, usize>,
}

/// Why one row could not be read, by column: what the decoders turn into a set-aside row.
#[derive(Debug)]
pub struct CellError {
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// Why a CSV body could not be read at all (rather than a row of it).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("reading the body: {0}")]
    Read(#[source] std::io::Error),
    #[error("unreadable CSV header: {0}")]
    Header(#[source] csv::Error),
    #[error("unreadable CSV header: invalid UTF-8")]
    HeaderUtf8(#[source] std::str::Utf8Error),
    #[error("report header lacks column(s) {}; header is {header:?}", missing.join(", "))]
    MissingColumns {
        missing: Vec<String>,
        header: Vec<String>,
    },
    #[error("unreadable CSV after row {row}: {source}")]
    After {
        row: usize,
        #[source]
        source: csv::Error,
    },
}

/// One data row. `cells` is `Err` when a cell held invalid UTF-8.
pub struct Row<'a> {
    pub number: usize,
    cols: &'a Columns,
    rec: csv::StringRecord,
}

impl Row<'_> {
    /// The cell under `col`: `Err` if the row is too short to have it, `Ok(None)` if blank.
    pub fn cell(&self, col: &str) -> Result<Option<&str>, CellError> {
        let missing = || CellError {
            column: col.to_string(),
            value: String::new(),
            reason: format!("missing column {col}"),
        };
        let i = *self.cols.index.get(col).ok_or_else(missing)?;
        match self.rec.get(i) {
            None => Err(missing()),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => Ok(Some(s.trim())),
        }
    }
}

/// Skips a UTF-8 BOM and blank lines before the header without reading the body into memory.
fn skip_preamble<R: BufRead>(r: &mut R) -> std::io::Result<()> {
    let buf = r.fill_buf()?;
    if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
        r.consume(3);
    }
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        let n = buf
            .iter()
            .take_while(|c| matches!(c, b'\n' | b'\r' | b' ' | b'\t'))
            .count();
        if n == 0 {
            return Ok(());
        }
        r.consume(n);
    }
}

/// Reads a CSV body: checks the header has `required`, then calls `row` for every data row
/// (`Err` for a row with invalid UTF-8, naming the column). An unreadable header or a read
/// error of the body is an error of the whole answer.
pub fn read_rows<R: Read>(
    body: R,
    required: &[&str],
    mut row: impl FnMut(Result<Row<'_>, (usize, CellError)>),
) -> Result<(), CsvError> {
    let mut body = BufReader::with_capacity(64 * 1024, body);
    skip_preamble(&mut body).map_err(CsvError::Read)?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let raw = rdr.byte_headers().map_err(CsvError::Header)?.clone();
    if raw.is_empty() {
        return Ok(()); // An empty body: an empty window.
    }
    let header = raw
        .iter()
        .map(|h| {
            std::str::from_utf8(h)
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
                .map_err(CsvError::HeaderUtf8)
        })
        .collect::<Result<Vec<String>, CsvError>>()?;
    let index = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.clone(), i))
        .collect();
    let cols = Columns { header, index };
    let missing: Vec<String> = required
        .iter()
        .filter(|c| !cols.index.contains_key(**c))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(CsvError::MissingColumns {
            missing,
            header: cols.header,
        });
    }
    let mut rec = csv::ByteRecord::new();
    let mut number = 0;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(source) => {
                return Err(CsvError::After {
                    row: number,
                    source,
                })
            }
        }
        number += 1;
        match csv::StringRecord::from_byte_record(rec.clone()) {
            Ok(r) => row(Ok(Row {
                number,
                cols: &cols,
                rec: r,
            })),
            Err(e) => {
                let field = e.utf8_error().field();
                let column = cols
                    .header
                    .get(field)
                    .cloned()
                    .unwrap_or_else(|| format!("#{}", field + 1));
                let value = String::from_utf8_lossy(rec.get(field).unwrap_or_default()).into();
                row(Err((
                    number,
                    CellError {
                        reason: format!("invalid UTF-8 in column {column}"),
                        column,
                        value,
                    },
                )))
            }
        }
    }
}
