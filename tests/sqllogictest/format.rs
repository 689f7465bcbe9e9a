//! SQLite's sqllogictest file format and result formatting, as its reference runner
//! (sqllogictest.c with the SQLite engine) defines them: records separated by blank lines,
//! `skipif`/`onlyif` conditions, `hash-threshold`, `halt`; query results printed one value per
//! line by declared column type (I: 64-bit integer, R: "%.3f", T: text with "(empty)" and
//! non-printable characters as '@', NULL as "NULL"), sorted by `rowsort`/`valuesort`, and
//! replaced by "N values hashing to <md5>" above the threshold.
//!
//! Written here instead of using the `sqllogictest` crate: its database trait receives only the
//! SQL text, while SQLite's formatting depends on each query's declared column types, and its
//! runner stops at the first failure where we need pass counts per file.

use md5::{Digest, Md5};

/// A value as a database returned it.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Statement {
        line: usize,
        sql: String,
        expect_error: bool,
    },
    Query {
        line: usize,
        sql: String,
        types: Vec<char>,
        sort: Sort,
        expected: Vec<String>,
    },
    HashThreshold(usize),
    Halt,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sort {
    None,
    Rows,
    Values,
}

/// Parses a test file, keeping only the records that apply to SQLite.
pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at].trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            at += 1;
            continue;
        }
        // Conditions, then the record they guard.
        let mut applies = true;
        while let Some(condition) = lines.get(at).map(|l| l.trim_end()) {
            let words: Vec<&str> = condition.split_whitespace().collect();
            match words.as_slice() {
                ["skipif", engine, ..] => applies &= *engine != "sqlite",
                ["onlyif", engine, ..] => applies &= *engine == "sqlite",
                _ => break,
            }
            at += 1;
        }
        let start = at + 1;
        let header: Vec<&str> = lines
            .get(at)
            .map_or(vec![], |l| l.split_whitespace().collect());
        at += 1;
        // The record's body runs to the next blank line.
        let mut body = Vec::new();
        while at < lines.len() && !lines[at].trim().is_empty() {
            body.push(lines[at].trim_end());
            at += 1;
        }
        let record = match header.as_slice() {
            ["hash-threshold", n] => Record::HashThreshold(
                n.parse()
                    .map_err(|_| format!("line {start}: bad hash-threshold {n:?}"))?,
            ),
            ["halt"] => Record::Halt,
            ["statement", outcome] => Record::Statement {
                line: start,
                sql: body.join("\n"),
                expect_error: *outcome == "error",
            },
            ["query", types, rest @ ..] => {
                let split = body.iter().position(|l| *l == "----");
                let (sql, expected) = match split {
                    Some(split) => (&body[..split], &body[split + 1..]),
                    None => (&body[..], &[][..]),
                };
                Record::Query {
                    line: start,
                    sql: sql.join("\n"),
                    types: types.chars().collect(),
                    sort: match rest.first() {
                        Some(&"rowsort") => Sort::Rows,
                        Some(&"valuesort") => Sort::Values,
                        _ => Sort::None,
                    },
                    expected: expected.iter().map(|l| l.trim().to_string()).collect(),
                }
            }
            other => return Err(format!("line {}: unknown record {other:?}", start - 1)),
        };
        if applies {
            records.push(record);
        }
    }
    Ok(records)
}

/// One value as SQLite's reference runner prints it for declared type `kind`.
pub fn format_value(value: &SqlValue, kind: char) -> String {
    match (value, kind) {
        (SqlValue::Null, _) => "NULL".to_string(),
        (_, 'I') => integer_of(value).to_string(),
        (_, 'R') => sqlite_fixed3(real_of(value)),
        (SqlValue::Text(text), _) if text.is_empty() => "(empty)".to_string(),
        (SqlValue::Text(text), _) => text
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '@' })
            .collect(),
        (SqlValue::Integer(i), _) => i.to_string(),
        (SqlValue::Real(r), _) => sqlite_real_text(*r),
    }
}

/// `sqlite3_column_int64`: reals truncate toward zero, text converts its numeric prefix.
fn integer_of(value: &SqlValue) -> i64 {
    match value {
        SqlValue::Null => 0,
        SqlValue::Integer(i) => *i,
        SqlValue::Real(r) => *r as i64,
        SqlValue::Text(text) => real_prefix(text) as i64,
    }
}

/// `sqlite3_column_double`.
fn real_of(value: &SqlValue) -> f64 {
    match value {
        SqlValue::Null => 0.0,
        SqlValue::Integer(i) => *i as f64,
        SqlValue::Real(r) => *r,
        SqlValue::Text(text) => real_prefix(text),
    }
}

/// The longest numeric prefix of `text` (after leading spaces), as SQLite reads it; 0 if none.
fn real_prefix(text: &str) -> f64 {
    let text = text.trim_start();
    (1..=text.len())
        .rev()
        .filter(|&end| text.is_char_boundary(end))
        .find_map(|end| text[..end].parse::<f64>().ok())
        .filter(|r| r.is_finite())
        .unwrap_or(0.0)
}

/// `sqlite3_snprintf("%.3f")`: SQLite's printf keeps at most 16 significant digits and
/// writes zeros after them (so -2^63 prints as -9223372036854776000.000).
fn sqlite_fixed3(value: f64) -> String {
    if !value.is_finite() || value.abs() < 1e13 {
        return format!("{value:.3}");
    }
    let scientific = format!("{value:.15e}"); // 16 significant digits: d.ddddddddddddddde±x
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: usize = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut text: String = digits
        .chars()
        .chain(std::iter::repeat('0'))
        .take(exponent + 4)
        .collect();
    text.insert(exponent + 1, '.');
    if negative {
        text.insert(0, '-');
    }
    text
}

/// A REAL as text, always with a decimal point or exponent as SQLite writes it (Rust's
/// shortest round-trip digits; SQLite's "%!.15g" can differ in the last digits of values the
/// corpus does not use as text).
fn sqlite_real_text(value: f64) -> String {
    let text = format!("{value}");
    if text.contains(['.', 'e', 'E']) || !value.is_finite() {
        text
    } else {
        format!("{text}.0")
    }
}

/// Formats, sorts and (above `hash_threshold` values) hashes a result as the reference does.
pub fn render(
    rows: &[Vec<SqlValue>],
    types: &[char],
    sort: Sort,
    hash_threshold: usize,
) -> Vec<String> {
    let mut rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, v)| format_value(v, types.get(i).copied().unwrap_or('T')))
                .collect()
        })
        .collect();
    let mut values: Vec<String> = match sort {
        Sort::None => rows.concat(),
        Sort::Rows => {
            rows.sort();
            rows.concat()
        }
        Sort::Values => {
            let mut values = rows.concat();
            values.sort();
            values
        }
    };
    if hash_threshold > 0 && values.len() > hash_threshold {
        let mut md5 = Md5::new();
        for value in &values {
            md5.update(value.as_bytes());
            md5.update(b"\n");
        }
        values = vec![format!(
            "{} values hashing to {}",
            values.len(),
            hex::encode(md5.finalize())
        )];
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_like_the_reference_runner() {
        assert_eq!(format_value(&SqlValue::Null, 'I'), "NULL");
        assert_eq!(format_value(&SqlValue::Real(-2.7), 'I'), "-2");
        assert_eq!(format_value(&SqlValue::Integer(3), 'R'), "3.000");
        assert_eq!(format_value(&SqlValue::Text("".into()), 'T'), "(empty)");
        assert_eq!(format_value(&SqlValue::Text("a\tb".into()), 'T'), "a@b");
        assert_eq!(format_value(&SqlValue::Text("12abc".into()), 'I'), "12");
        assert_eq!(format_value(&SqlValue::Real(2.0), 'T'), "2.0");
        assert_eq!(
            format_value(&SqlValue::Real(-9223372036854775808.0), 'R'),
            "-9223372036854776000.000"
        );
        assert_eq!(
            format_value(&SqlValue::Real(-18446744073709551616.0), 'R'),
            "-18446744073709550000.000"
        );
    }

    #[test]
    fn large_results_hash_like_the_reference_runner() {
        let rows: Vec<Vec<SqlValue>> = (1..=3).map(|i| vec![SqlValue::Integer(i)]).collect();
        // md5 of "1\n2\n3\n", every value followed by a newline.
        assert_eq!(
            render(&rows, &['I'], Sort::None, 2),
            vec!["3 values hashing to c0710d6b4f15dfa88f600b0e6b624077"]
        );
        assert_eq!(render(&rows, &['I'], Sort::None, 8), vec!["1", "2", "3"]);
    }

    #[test]
    fn conditions_keep_only_sqlite_records() {
        let records = parse(
            "hash-threshold 8\n\nstatement ok\nCREATE TABLE t(a)\n\nskipif sqlite\nquery I\nSELECT 1\n----\n1\n\nonlyif mysql\nstatement ok\nX\n\nonlyif sqlite\nquery IT rowsort\nSELECT 1, 'a'\n----\n1\na\n",
        )
        .unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0], Record::HashThreshold(8));
        assert!(matches!(
            &records[2],
            Record::Query { types, sort: Sort::Rows, expected, .. }
                if types == &['I', 'T'] && expected == &["1", "a"]
        ));
    }
}
