//! Set-returning functions in a catalog query's select list — `unnest(indkey) AS attnum,
//! generate_subscripts(indkey, 1) AS ord`, as SQLAlchemy lists a key's columns — rewritten
//! onto SQLite's `json_each`: the array is joined once per select, `unnest(a)` reads its
//! `value` and `generate_subscripts(a, 1)` its `key + 1`, so the two stay in step as in
//! PostgreSQL.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Select, SelectItem, SetExpr,
    TableFactor, VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The alias of the json_each that expands a select list's first array.
const DRIVER: &str = "shoal_srf";

/// `sql` with set-returning functions in select lists rewritten; unchanged when it has none
/// (or does not parse).
pub fn expand(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("unnest") && !lower.contains("generate_subscripts") {
        return sql.to_string();
    }
    let Some(mut statements) = crate::pgwire::dialect::parse(sql) else {
        return sql.to_string();
    };
    let mut expander = Expander { changed: false };
    let _ = statements.visit(&mut expander);
    if !expander.changed {
        return sql.to_string();
    }
    statements
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

struct Expander {
    changed: bool,
}

impl VisitorMut for Expander {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `array(SELECT …)` (psql's toast options, always empty here): the subquery's value.
        if let Expr::Function(function) = expr
            && function.name.to_string().eq_ignore_ascii_case("array")
            && let FunctionArguments::Subquery(query) = &function.args
        {
            *expr = Expr::Subquery(query.clone());
            self.changed = true;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        // `FROM unnest(a) x`: json_each over the array, its elements read as `x.value`.
        let mut element_names: Vec<String> = Vec::new();
        for from in &mut select.from {
            if let Some((replacement, alias)) = from_unnest(&from.relation) {
                from.relation = replacement;
                element_names.push(alias);
                self.changed = true;
            }
        }
        if !element_names.is_empty() {
            let mut renamer = ElementNames {
                names: element_names,
            };
            for item in &mut select.projection {
                let _ = item.visit(&mut renamer);
            }
            if let Some(selection) = &mut select.selection {
                let _ = selection.visit(&mut renamer);
            }
        }
        // Set-returning functions in one select list run in step (PostgreSQL zips them): the
        // first array is expanded by json_each (shoal_srf), the others read at its position.
        let mut driver: Option<String> = None;
        for item in &mut select.projection {
            let expr = match item {
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
                _ => continue,
            };
            let Some((function, array)) = set_returning(expr) else {
                continue;
            };
            let first = driver.get_or_insert_with(|| array.clone()).clone();
            let replacement = match function.as_str() {
                "unnest" if array == first => format!("{DRIVER}.value"),
                "unnest" => {
                    format!("json_extract(shoal_array_json({array}), '$[' || {DRIVER}.key || ']')")
                }
                _ => format!("({DRIVER}.key + 1)"),
            };
            *expr = Expr::Identifier(Ident::new(replacement));
        }
        if let Some(array) = driver {
            let template =
                format!("SELECT 1 FROM json_each(shoal_array_json({array})) AS {DRIVER}");
            if let Ok(query) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&template)
                .and_then(|mut parser| parser.parse_query())
                && let SetExpr::Select(parsed) = *query.body
                && let Some(from) = parsed.from.into_iter().next()
            {
                select.from.push(from);
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }
}

/// `unnest(a) [AS] x` in FROM as `json_each(shoal_array_json(a)) AS x`, and `x`.
fn from_unnest(factor: &TableFactor) -> Option<(TableFactor, String)> {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        ..
    } = factor
    else {
        return None;
    };
    let function = name.to_string().to_ascii_lowercase();
    if function.strip_prefix("pg_catalog.").unwrap_or(&function) != "unnest" {
        return None;
    }
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = args.args.as_slice() else {
        return None;
    };
    let alias = alias.name.value.clone();
    let template = format!("SELECT 1 FROM json_each(shoal_array_json({array})) AS {alias}");
    let query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&template)
        .and_then(|mut parser| parser.parse_query())
        .ok()?;
    let SetExpr::Select(parsed) = *query.body else {
        return None;
    };
    let relation = parsed.from.into_iter().next()?.relation;
    Some((relation, alias))
}

/// Bare references to an unnested element (`x`) read the json_each row's value (`x.value`).
struct ElementNames {
    names: Vec<String>,
}

impl VisitorMut for ElementNames {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = expr
            && self
                .names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&ident.value))
        {
            *expr = Expr::Identifier(Ident::new(format!("{}.value", ident.value)));
        }
        ControlFlow::Continue(())
    }
}

/// `unnest(a)` or `generate_subscripts(a, 1)`: the function and the array's text.
fn set_returning(expr: &Expr) -> Option<(String, String)> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = function.name.to_string().to_ascii_lowercase();
    let name = name
        .strip_prefix("pg_catalog.")
        .unwrap_or(&name)
        .to_string();
    if name != "unnest" && name != "generate_subscripts" {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    match list.args.first() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) => Some((name, array.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnest_and_its_subscripts_read_one_json_each() {
        let expanded = expand(
            "SELECT c.conname, unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, $1::INTEGER) AS ord \
             FROM pg_constraint AS c JOIN pg_index AS i ON c.conindid = i.indexrelid",
        );
        assert_eq!(
            expanded,
            "SELECT c.conname, shoal_srf.value AS attnum, (shoal_srf.key + 1) AS ord FROM \
             pg_constraint AS c JOIN pg_index AS i ON c.conindid = i.indexrelid, \
             json_each(shoal_array_json(i.indkey)) AS shoal_srf"
        );
        assert_eq!(expand("SELECT 1"), "SELECT 1");
        assert_eq!(
            expand("SELECT array(SELECT 'toast.' || x FROM pg_catalog.unnest(tc.reloptions) x)"),
            "SELECT (SELECT 'toast.' || x.value FROM \
             json_each(shoal_array_json(tc.reloptions)) AS x)"
        );
    }
}
