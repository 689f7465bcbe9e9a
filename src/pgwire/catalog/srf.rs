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
/// The column an `array(SELECT …)` subquery's values are gathered from.
const ARRAY_ELEMENT: &str = "shoal_element";

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
        // `array(SELECT x …)`: the rows' values as one array, `array_agg` over the subquery
        // (Django reads a constraint's columns so).
        if let Expr::Function(function) = expr
            && function.name.to_string().eq_ignore_ascii_case("array")
            && let FunctionArguments::Subquery(query) = &function.args
        {
            let mut query = query.clone();
            if let SetExpr::Select(inner) = query.body.as_mut()
                && let [item] = inner.projection.as_mut_slice()
                && let SelectItem::UnnamedExpr(element)
                | SelectItem::ExprWithAlias { expr: element, .. } = item
            {
                *item = SelectItem::ExprWithAlias {
                    expr: element.clone(),
                    alias: Ident::new(ARRAY_ELEMENT),
                };
                let aggregated =
                    format!("(SELECT array_agg({ARRAY_ELEMENT}) FROM ({query}) AS shoal_array)");
                *expr = Expr::Identifier(Ident::new(aggregated));
            } else {
                *expr = Expr::Subquery(query);
            }
            self.changed = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut sqlparser::ast::Query) -> ControlFlow<()> {
        // `FROM generate_subscripts(a, 1) AS k` (Peewee lists an index's columns so): json_each
        // over the array, `k` its position — from 0 for a vector such as `indkey`, whose
        // subscripts start there, else from 1 — wherever the query names `k`.
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let mut positions: Vec<(String, String)> = Vec::new();
        for from in &mut select.from {
            if let Some((replacement, alias, position)) = from_subscripts(&from.relation) {
                from.relation = replacement;
                positions.push((alias, position));
                self.changed = true;
            }
        }
        if positions.is_empty() {
            return ControlFlow::Continue(());
        }
        let mut renamer = Positions { names: positions };
        for item in &mut select.projection {
            let _ = item.visit(&mut renamer);
        }
        if let Some(selection) = &mut select.selection {
            let _ = selection.visit(&mut renamer);
        }
        if let Some(order_by) = &mut query.order_by {
            let _ = order_by.visit(&mut renamer);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        if lateral_unnest(select) {
            self.changed = true;
        }
        // `FROM unnest(a) x`: json_each over the array, its elements read as `x.value`.
        let mut element_names: Vec<String> = Vec::new();
        for from in &mut select.from {
            if let Some((replacement, alias)) = from_unnest(&from.relation) {
                from.relation = replacement;
                element_names.extend(alias);
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

/// `unnest(a) [AS] x` in FROM as `json_each(shoal_array_json(a)) AS x`, and `x` (whose bare
/// mentions then read `x.value`); `UNNEST(a) [WITH ORDINALITY] x (element, position)` as a
/// table of those columns over json_each (as Django reads a constraint's columns).
fn from_unnest(factor: &TableFactor) -> Option<(TableFactor, Option<String>)> {
    if let Some(unnest) = Unnest::of(factor) {
        let columns: Vec<String> = unnest
            .columns("shoal_unnest")
            .into_iter()
            .map(|(name, expr)| format!("{expr} AS {name}"))
            .collect();
        let template = format!(
            "SELECT 1 FROM (SELECT {} FROM {}) AS {}",
            columns.join(", "),
            unnest.driver("shoal_unnest"),
            unnest.alias
        );
        return Some((parse_factor(&template)?, None));
    }
    let (array, alias, arguments) = function_in_from(factor, "unnest")?;
    if arguments != 1 {
        return None;
    }
    let relation = parse_factor(&format!(
        "SELECT 1 FROM json_each(shoal_array_json({array})) AS {alias}"
    ))?;
    Some((relation, Some(alias)))
}

/// `function(array, …) AS alias` in FROM, for the set-returning `function`: the array's text,
/// the alias and how many arguments it was given.
fn function_in_from(factor: &TableFactor, function: &str) -> Option<(String, String, usize)> {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        ..
    } = factor
    else {
        return None;
    };
    let name = name.to_string().to_ascii_lowercase();
    if name.strip_prefix("pg_catalog.").unwrap_or(&name) != function {
        return None;
    }
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array)), ..] = args.args.as_slice() else {
        return None;
    };
    Some((array.to_string(), alias.name.value.clone(), args.args.len()))
}

/// `generate_subscripts(a, 1) AS k` in FROM: json_each over the array as `k`, and what `k`
/// reads as (the position).
fn from_subscripts(factor: &TableFactor) -> Option<(TableFactor, String, String)> {
    let (array, alias, _) = function_in_from(factor, "generate_subscripts")?;
    let column = array.to_ascii_lowercase();
    let vector = [
        "indkey",
        "indclass",
        "indoption",
        "indcollation",
        "proargtypes",
    ]
    .iter()
    .any(|name| column.ends_with(name));
    let position = if vector {
        format!("{alias}.key")
    } else {
        format!("({alias}.key + 1)")
    };
    let relation = parse_factor(&format!(
        "SELECT 1 FROM json_each(shoal_array_json({array})) AS {alias}"
    ))?;
    Some((relation, alias, position))
}

/// Renames a FROM function's alias, used as its one column, to what it reads as.
struct Positions {
    names: Vec<(String, String)>,
}

impl VisitorMut for Positions {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = expr
            && let Some((_, position)) = self
                .names
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&ident.value))
        {
            *expr = Expr::Identifier(Ident::new(position.clone()));
        }
        ControlFlow::Continue(())
    }
}

/// `UNNEST(a, b, …) [WITH ORDINALITY] [AS] x (c1, c2, …, position)` in FROM: the arrays zipped
/// over a json_each of the first (PostgreSQL pads shorter ones with NULL, as json_extract
/// past an array's end reads).
struct Unnest {
    arrays: Vec<String>,
    alias: String,
    /// Output column names: one per array, then the position with ORDINALITY.
    names: Vec<String>,
    ordinality: bool,
}

impl Unnest {
    fn of(factor: &TableFactor) -> Option<Unnest> {
        let TableFactor::UNNEST {
            alias,
            array_exprs,
            with_ordinality,
            with_offset: false,
            ..
        } = factor
        else {
            return None;
        };
        if array_exprs.is_empty() {
            return None;
        }
        let given: Vec<String> = alias
            .as_ref()
            .map(|a| a.columns.iter().map(|c| c.name.to_string()).collect())
            .unwrap_or_default();
        let count = array_exprs.len() + usize::from(*with_ordinality);
        let names = (0..count)
            .map(|i| {
                given.get(i).cloned().unwrap_or_else(|| {
                    if i < array_exprs.len() {
                        "unnest".to_string()
                    } else {
                        "ordinality".to_string()
                    }
                })
            })
            .collect();
        Some(Unnest {
            arrays: array_exprs.iter().map(ToString::to_string).collect(),
            alias: alias
                .as_ref()
                .map_or_else(|| "unnest".to_string(), |a| a.name.to_string()),
            names,
            ordinality: *with_ordinality,
        })
    }

    /// The json_each that drives the rows, named `driver`.
    fn driver(&self, driver: &str) -> String {
        format!(
            "json_each(shoal_array_json({})) AS {driver}",
            self.arrays[0]
        )
    }

    /// Each output column and the expression (over the json_each named `driver`) it reads.
    fn columns(&self, driver: &str) -> Vec<(String, String)> {
        let mut columns: Vec<(String, String)> = self
            .arrays
            .iter()
            .enumerate()
            .map(|(i, array)| {
                let expr = if i == 0 {
                    format!("{driver}.value")
                } else {
                    format!("json_extract(shoal_array_json({array}), '$[' || {driver}.key || ']')")
                };
                (self.names[i].clone(), expr)
            })
            .collect();
        if self.ordinality {
            columns.push((
                self.names[self.arrays.len()].clone(),
                format!("({driver}.key + 1)"),
            ));
        }
        columns
    }
}

/// The FROM item of `template` (`SELECT 1 FROM <item>`).
fn parse_factor(template: &str) -> Option<TableFactor> {
    let query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(template)
        .and_then(|mut parser| parser.parse_query())
        .ok()?;
    let SetExpr::Select(parsed) = *query.body else {
        return None;
    };
    Some(parsed.from.into_iter().next()?.relation)
}

/// `FROM t, UNNEST(t.a, t.b) WITH ORDINALITY x (…)`: SQLite has no LATERAL, so the json_each
/// goes into FROM itself and the select reads `x`'s columns through it (`*` spelled out).
fn lateral_unnest(select: &mut Select) -> bool {
    let names: Vec<String> = select
        .from
        .iter()
        .filter_map(|from| match &from.relation {
            TableFactor::Table { name, alias, .. } => Some(
                alias
                    .as_ref()
                    .map_or_else(|| name.to_string(), |a| a.name.to_string())
                    .to_ascii_lowercase(),
            ),
            _ => None,
        })
        .collect();
    let Some(position) = select.from.iter().position(|from| {
        Unnest::of(&from.relation).is_some_and(|unnest| {
            unnest.arrays.iter().any(|array| {
                let array = array.to_ascii_lowercase();
                names.iter().any(|name| array.contains(&format!("{name}.")))
            })
        })
    }) else {
        return false;
    };
    let Some(unnest) = Unnest::of(&select.from[position].relation) else {
        return false;
    };
    let driver = format!("{}_each", unnest.alias);
    let Some(factor) = parse_factor(&format!("SELECT 1 FROM {}", unnest.driver(&driver))) else {
        return false;
    };
    select.from[position].relation = factor;
    let columns = unnest.columns(&driver);
    let mut projection = Vec::new();
    for item in std::mem::take(&mut select.projection) {
        match item {
            SelectItem::Wildcard(_) => {
                for name in names.iter() {
                    projection.push(SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(
                        format!("{name}.*"),
                    ))));
                }
                for (name, expr) in &columns {
                    projection.push(SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(
                        format!("{expr} AS {name}"),
                    ))));
                }
            }
            other => projection.push(other),
        }
    }
    select.projection = projection;
    let mut reader = LateralColumns {
        alias: unnest.alias.to_ascii_lowercase(),
        columns,
    };
    for item in &mut select.projection {
        let _ = item.visit(&mut reader);
    }
    if let Some(selection) = &mut select.selection {
        let _ = selection.visit(&mut reader);
    }
    true
}

/// `x.c` of a lateral UNNEST as the expression that reads it.
struct LateralColumns {
    alias: String,
    columns: Vec<(String, String)>,
}

impl VisitorMut for LateralColumns {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr
            && let [table, column] = parts.as_slice()
            && table.value.eq_ignore_ascii_case(&self.alias)
            && let Some((_, read)) = self
                .columns
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&column.value))
        {
            *expr = Expr::Identifier(Ident::new(read.clone()));
        }
        ControlFlow::Continue(())
    }
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
        // Django reads a constraint's columns, and an index's keys beside their options, so.
        assert_eq!(
            expand(
                "SELECT array(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY cols(colid, \
                 arridx) JOIN pg_attribute AS ca ON cols.colid = ca.attnum ORDER BY cols.arridx) \
                 FROM pg_constraint c"
            ),
            "SELECT (SELECT array_agg(shoal_element) FROM (SELECT attname AS shoal_element FROM \
             (SELECT shoal_unnest.value AS colid, (shoal_unnest.key + 1) AS arridx FROM \
             json_each(shoal_array_json(c.conkey)) AS shoal_unnest) AS cols JOIN pg_attribute AS \
             ca ON cols.colid = ca.attnum ORDER BY cols.arridx) AS shoal_array) FROM pg_constraint c"
        );
        assert_eq!(
            expand(
                "SELECT * FROM pg_index i, unnest(i.indkey, i.indoption) WITH ORDINALITY \
                 koi(key, option, arridx)"
            ),
            "SELECT i.*, koi_each.value AS key, json_extract(shoal_array_json(i.indoption), '$[' \
             || koi_each.key || ']') AS option, (koi_each.key + 1) AS arridx FROM pg_index i, \
             json_each(shoal_array_json(i.indkey)) AS koi_each"
        );
        assert_eq!(
            expand("SELECT array(SELECT 'toast.' || x FROM pg_catalog.unnest(tc.reloptions) x)"),
            "SELECT (SELECT array_agg(shoal_element) FROM (SELECT 'toast.' || x.value AS \
             shoal_element FROM json_each(shoal_array_json(tc.reloptions)) AS x) AS shoal_array)"
        );
    }
}
