//! How the shell prints a result set: aligned table, CSV, JSON or one `column = value` line per
//! value (`.mode`).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Table,
    Csv,
    Json,
    Line,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "table" | "box" | "column" => Ok(Mode::Table),
            "csv" => Ok(Mode::Csv),
            "json" => Ok(Mode::Json),
            "line" => Ok(Mode::Line),
            other => Err(format!(
                "unknown mode {other:?}: use table, csv, json or line"
            )),
        }
    }
}

/// A value as the shell shows it: NULL as empty, text without quotes, blobs as base64 (as the
/// HTTP API sends them).
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders the rows of one result in `mode`.
pub fn render(mode: Mode, columns: &[String], rows: &[Vec<Value>]) -> String {
    match mode {
        Mode::Table => table(columns, rows),
        Mode::Csv => csv(columns, rows),
        Mode::Json => json(columns, rows),
        Mode::Line => line(columns, rows),
    }
}

fn table(columns: &[String], rows: &[Vec<Value>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(text).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            cells
                .iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .chain([name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .all(|v| v.is_number() || v.is_null())
        })
        .collect();
    let mut out = String::new();
    let header: Vec<String> = columns
        .iter()
        .zip(&widths)
        .map(|(name, width)| format!(" {name:^width$} "))
        .collect();
    out.push_str(header.join("|").trim_end());
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let width = widths.get(i).copied().unwrap_or(0);
                if numeric.get(i).copied().unwrap_or(false) {
                    format!(" {cell:>width$} ")
                } else {
                    format!(" {cell:<width$} ")
                }
            })
            .collect();
        out.push_str(line.join("|").trim_end());
        out.push('\n');
    }
    let count = rows.len();
    out.push_str(&format!(
        "({count} row{})\n",
        if count == 1 { "" } else { "s" }
    ));
    out
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv(columns: &[String], rows: &[Vec<Value>]) -> String {
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in rows {
        let fields: Vec<String> = row.iter().map(|v| csv_field(&text(v))).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn json(columns: &[String], rows: &[Vec<Value>]) -> String {
    let objects: Vec<Value> = rows
        .iter()
        .map(|row| Value::Object(columns.iter().cloned().zip(row.iter().cloned()).collect()))
        .collect();
    format!("{}\n", Value::Array(objects))
}

fn line(columns: &[String], rows: &[Vec<Value>]) -> String {
    let width = columns.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let blocks: Vec<String> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .zip(row)
                .map(|(name, value)| format!("{name:>width$} = {}\n", text(value)))
                .collect()
        })
        .collect();
    blocks.join("\n")
}

/// The columns and rows of one rqlite JSON result (`{"columns": […], "values": [[…]]}`);
/// `None` when it has no columns (a statement without a result set).
pub fn result_rows(result: &Value) -> Option<(Vec<String>, Vec<Vec<Value>>)> {
    let columns: Vec<String> = result["columns"]
        .as_array()?
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect();
    let rows: Vec<Vec<Value>> = result["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| row.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    Some((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> (Vec<String>, Vec<Vec<Value>>) {
        (
            vec!["id".into(), "name".into()],
            vec![vec![json!(1), json!("ada")], vec![json!(10), json!(null)]],
        )
    }

    #[test]
    fn tables_align_numbers_right_and_text_left() {
        let (columns, rows) = sample();
        assert_eq!(
            render(Mode::Table, &columns, &rows),
            " id | name\n----+------\n  1 | ada\n 10 |\n(2 rows)\n"
        );
    }

    #[test]
    fn csv_json_and_line_modes() {
        let (columns, rows) = sample();
        assert_eq!(render(Mode::Csv, &columns, &rows), "id,name\n1,ada\n10,\n");
        assert_eq!(
            render(Mode::Json, &columns, &rows),
            "[{\"id\":1,\"name\":\"ada\"},{\"id\":10,\"name\":null}]\n"
        );
        assert_eq!(
            render(Mode::Line, &columns, &rows),
            "  id = 1\nname = ada\n\n  id = 10\nname = \n"
        );
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
