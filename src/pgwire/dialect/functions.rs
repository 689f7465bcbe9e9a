//! PostgreSQL functions SQLite lacks, as SQLite expressions that compute the same value. Each
//! is built from SQLite's own functions, so every replica evaluates it the same way: time
//! comes from the log entry (the clock VFS), randomness from its seed (`db/determinism.rs`).

use sqlparser::ast::{Function, FunctionArg, FunctionArgExpr, FunctionArguments};

/// A UUID version 4 (RFC 9562) from 16 random bytes, in PostgreSQL's lower-case text form.
const RANDOM_UUID: &str = "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || \
     '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || \
     substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2) || \
     '-' || lower(hex(randomblob(6))))";

/// `uuid_generate_v4()`: the same UUID, spelt so that a column default reads back as the
/// function the client wrote (`postgresql_spelling`).
const RANDOM_UUID_V4: &str = "('' || (lower(hex(randomblob(4))) || '-' || \
     lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || \
     substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2) || \
     '-' || lower(hex(randomblob(6)))))";

/// `LOCALTIMESTAMP`: the statement's time in UTC without a zone.
const LOCAL_NOW: &str = "(strftime('%Y-%m-%d %H:%M:%f', 'now'))";

/// The PostgreSQL function call Shoal translated into `sqlite` (a column's DEFAULT as SQLite
/// keeps it, possibly re-printed with other spacing, case or parentheses), so that catalogs
/// show the default as the client wrote it.
pub fn postgresql_spelling(sqlite: &str) -> Option<&'static str> {
    let normalized = |text: &str| -> String {
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let text = normalized(sqlite);
    [
        (NOW, "now()"),
        (LOCAL_NOW, "LOCALTIMESTAMP"),
        (RANDOM_UUID, "gen_random_uuid()"),
        (RANDOM_UUID_V4, "uuid_generate_v4()"),
    ]
    .into_iter()
    .find(|(translation, _)| normalized(translation) == text)
    .map(|(_, spelling)| spelling)
}

/// `now()` and its synonyms: the statement's time in UTC, as a `timestamptz` reads. (In
/// parentheses, as SQLite wants a function call in a column's DEFAULT.)
const NOW: &str = "(strftime('%Y-%m-%d %H:%M:%f+00', 'now'))";

/// SQLite's text for `function`, when it is a PostgreSQL function SQLite does not have;
/// `Ok(None)` for a function to leave as written; `Err` names one Shoal cannot serve.
pub fn translate(function: &Function) -> Result<Option<String>, String> {
    let name = function.name.to_string().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let arguments = plain_arguments(&function.args);
    let no_arguments = matches!(arguments.as_deref(), Some([]));
    Ok(match name {
        "now" | "transaction_timestamp" | "statement_timestamp" | "clock_timestamp"
            if no_arguments =>
        {
            Some(NOW.to_string())
        }
        // SQLite's CURRENT_TIMESTAMP has whole seconds and no zone; PostgreSQL's is now().
        "current_timestamp" if matches!(function.args, FunctionArguments::None) => {
            Some(NOW.to_string())
        }
        "localtimestamp" if matches!(function.args, FunctionArguments::None) => {
            Some(LOCAL_NOW.to_string())
        }
        "date_trunc" => {
            let Some([field, operand]) = arguments.as_deref() else {
                return Err("date_trunc() with these arguments".into());
            };
            let literal = field
                .strip_prefix('\'')
                .and_then(|f| f.strip_suffix('\''))
                .filter(|f| !f.contains('\''));
            let truncated = match literal {
                Some(field) => super::intervals::date_trunc(field, operand),
                // A field bound as a parameter (SQLAlchemy's func.date_trunc): chosen when it
                // runs.
                None => Some(super::intervals::date_trunc_by(field, operand)),
            };
            match truncated {
                Some(truncated) => Some(truncated),
                None => return Err(format!("date_trunc({field}, …)")),
            }
        }
        "gen_random_uuid" if no_arguments => Some(RANDOM_UUID.to_string()),
        "uuid_generate_v4" if no_arguments => Some(RANDOM_UUID_V4.to_string()),
        // PostgreSQL's GREATEST/LEAST skip NULLs (SQLite's max/min of several arguments
        // return NULL on any): the aggregate over the arguments does exactly that. (A UNION
        // ALL rather than VALUES: SQLite does not resolve a VALUES list's column1 when the
        // list refers to the outer query.)
        "greatest" | "least" => {
            let Some(arguments) = arguments.filter(|a| !a.is_empty()) else {
                return Err(format!("{}() with these arguments", name.to_uppercase()));
            };
            let aggregate = if name == "greatest" { "max" } else { "min" };
            let rows: Vec<String> = arguments
                .iter()
                .enumerate()
                .map(|(i, a)| match i {
                    0 => format!("SELECT {a} AS shoal_argument"),
                    _ => format!("SELECT {a}"),
                })
                .collect();
            Some(format!(
                "(SELECT {aggregate}(shoal_argument) FROM ({}))",
                rows.join(" UNION ALL ")
            ))
        }
        "array_agg" | "unnest" | "array_length" | "generate_subscripts" => {
            return Err(format!("{name}() (arrays)"));
        }
        _ => None,
    })
}

/// `EXTRACT(field FROM operand)` in SQLite, for a timestamp stored as ISO 8601 text (with
/// Shoal's `+00` for a timestamptz, which SQLite's date functions do not read).
pub fn extract(field: &str, operand: &str) -> Option<String> {
    let operand = &super::intervals::time_value(operand);
    let integer = |format: &str| format!("CAST(strftime('{format}', {operand}) AS INTEGER)");
    Some(match field {
        "year" => integer("%Y"),
        "month" => integer("%m"),
        "day" => integer("%d"),
        "hour" => integer("%H"),
        "minute" => integer("%M"),
        "second" => format!("CAST(strftime('%f', {operand}) AS REAL)"),
        "dow" => integer("%w"),
        "isodow" => integer("%u"),
        "doy" => integer("%j"),
        "quarter" => format!("((CAST(strftime('%m', {operand}) AS INTEGER) + 2) / 3)"),
        "epoch" => format!("unixepoch({operand}, 'subsec')"),
        "milliseconds" => format!("CAST(strftime('%f', {operand}) * 1000 AS INTEGER)"),
        "microseconds" => format!("CAST(strftime('%f', {operand}) * 1000000 AS INTEGER)"),
        _ => return None,
    })
}

/// A call's arguments as SQL text, when they are plain expressions (no DISTINCT, no ORDER
/// BY, no named arguments); `Some([])` for an empty list.
fn plain_arguments(arguments: &FunctionArguments) -> Option<Vec<String>> {
    let FunctionArguments::List(list) = arguments else {
        return None;
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    list.args
        .iter()
        .map(|argument| match argument {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr.to_string()),
            _ => None,
        })
        .collect()
}
