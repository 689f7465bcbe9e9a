//! The scatter tier's plan: a SELECT over one distributed table (joined, if at all, with
//! reference tables) split into the query every shard runs — its FROM and WHERE unchanged,
//! aggregates as partials (COUNT as counts to sum, SUM/TOTAL as sums, AVG as a sum and a
//! count, MIN/MAX as themselves), GROUP BY pushed down — and the combine query `merge` runs
//! over the gathered partial rows in an in-memory SQLite (GROUP BY redone, HAVING, ORDER BY
//! and LIMIT applied only there). A SELECT without aggregates keeps its projection; the shards'
//! rows are merged in the statement's order, ties broken by rowid as a scan of one table
//! returns them, and an integer LIMIT is pushed down when that order is total.
//!
//! Decided from the statement's tokens. Whatever this does not recognise with certainty — a
//! subquery, a window, DISTINCT or ordered aggregates, an unknown function, a collation, a
//! bare column beside an aggregate, an outer join the shards cannot answer alone — is left to
//! the gather tier, which is exact for every statement.

use std::collections::BTreeSet;

use crate::db::dump::quote_identifier;
use crate::router::tokens::{Lexeme, Token, lex};

/// The name of the table the shards' partial rows are loaded into for the merge.
pub const PARTIALS: &str = "shoal_partials";

/// A scatter plan for one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Scatter {
    /// The distributed table it reads (lower-case).
    pub table: String,
    /// What every group runs, with the statement's own parameters.
    pub shard_sql: String,
    /// What runs over the partial rows (table [`PARTIALS`], columns `p0`, `p1`, …).
    pub merge_sql: String,
    /// How many columns each shard returns.
    pub partial_columns: usize,
    /// Partial columns holding sums. A REAL among them means the shards summed floating-point
    /// values, whose rounding in two steps can differ from SQLite's one pass: the statement is
    /// gathered instead.
    pub sums: Vec<usize>,
    /// The result's column names, as SQLite names them for the original statement.
    pub columns: Vec<String>,
    /// The result columns' declared types, where SQLite knows one.
    pub declared: Vec<Option<String>>,
}

/// What the plan needs to know of the statement's tables.
pub struct Context<'a> {
    /// The one distributed table read (lower-case).
    pub distributed: &'a str,
    /// Every reference table of the database (lower-case).
    pub references: &'a BTreeSet<String>,
    /// Every view of the database (lower-case).
    pub views: &'a BTreeSet<String>,
    /// The distributed table is the only table read and has a rowid.
    pub rowid_order: bool,
    /// The original statement's result column names and declared types.
    pub columns: Vec<String>,
    pub declared: Vec<Option<String>>,
}

/// The scatter plan of `sql`, if it has one (`None`: gather it).
pub fn rewrite(sql: &str, context: &Context<'_>) -> Option<Scatter> {
    let lexemes = lex(sql)?;
    let select = Select::split(&lexemes)?;
    check_tokens(&lexemes, context)?;
    let items = items(select.projection)?;
    let query = Query {
        sql,
        select: &select,
        context,
        aliases: items.iter().filter_map(|i| i.alias.clone()).collect(),
        items,
    };
    query.check_parameters()?;
    query.check_functions()?;
    let (shard_sql, merge_sql, partial_columns, sums) = if query.aggregates()? {
        query.aggregate_plan()?
    } else {
        query.rows_plan()?
    };
    Some(Scatter {
        table: context.distributed.to_string(),
        shard_sql,
        merge_sql,
        partial_columns,
        sums,
        columns: context.columns.clone(),
        declared: context.declared.clone(),
    })
}

/// A SELECT's clauses, as token slices.
struct Select<'l> {
    /// `SELECT DISTINCT`.
    distinct: bool,
    projection: &'l [Lexeme],
    from: &'l [Lexeme],
    filter: Option<&'l [Lexeme]>,
    group_by: Option<&'l [Lexeme]>,
    having: Option<&'l [Lexeme]>,
    order_by: Option<&'l [Lexeme]>,
    limit: Option<&'l [Lexeme]>,
}

impl<'l> Select<'l> {
    /// The clauses of a simple SELECT; `None` for anything else.
    fn split(lexemes: &'l [Lexeme]) -> Option<Select<'l>> {
        if !lexemes.first()?.token.is("select") {
            return None;
        }
        // Clause keywords at depth 0, in the order SQL requires.
        const CLAUSES: [&str; 6] = ["from", "where", "group", "having", "order", "limit"];
        let mut marks: Vec<(usize, usize)> = Vec::new(); // (clause, index of its keyword)
        let mut depth = 0i32;
        for (at, lexeme) in lexemes.iter().enumerate().skip(1) {
            match &lexeme.token {
                Token::Symbol(s) if s == "(" => depth += 1,
                Token::Symbol(s) if s == ")" => depth -= 1,
                Token::Word(word) if depth == 0 => {
                    if let Some(clause) = CLAUSES.iter().position(|c| c == word) {
                        if marks.last().is_some_and(|(last, _)| *last >= clause) {
                            return None;
                        }
                        marks.push((clause, at));
                    }
                }
                _ => {}
            }
            if depth < 0 {
                return None;
            }
        }
        let (from_clause, from_at) = *marks.first()?;
        if from_clause != 0 || depth != 0 {
            return None;
        }
        let mut projection_start = 1;
        let mut distinct = false;
        match lexemes.get(1).map(|l| &l.token) {
            Some(token) if token.is("distinct") => {
                distinct = true;
                projection_start = 2;
            }
            Some(token) if token.is("all") => projection_start = 2,
            _ => {}
        }
        let body = |index: usize| {
            let (clause, at) = marks[index];
            let end = marks
                .get(index + 1)
                .map_or(lexemes.len(), |(_, next)| *next);
            // GROUP BY and ORDER BY: skip the BY.
            let skip = if clause == 2 || clause == 4 {
                if !lexemes.get(at + 1)?.token.is("by") {
                    return None;
                }
                2
            } else {
                1
            };
            let slice = lexemes.get(at + skip..end)?;
            (!slice.is_empty()).then_some((clause, slice))
        };
        let mut select = Select {
            distinct,
            projection: lexemes.get(projection_start..from_at)?,
            from: &[],
            filter: None,
            group_by: None,
            having: None,
            order_by: None,
            limit: None,
        };
        for index in 0..marks.len() {
            let (clause, slice) = body(index)?;
            match clause {
                0 => select.from = slice,
                1 => select.filter = Some(slice),
                2 => select.group_by = Some(slice),
                3 => select.having = Some(slice),
                4 => select.order_by = Some(slice),
                _ => select.limit = Some(slice),
            }
        }
        (!select.projection.is_empty()).then_some(select)
    }
}

/// Words that make a statement one this tier does not take: subqueries, compound selects,
/// windows, filtered aggregates, collations, `IS [NOT] DISTINCT FROM` (its FROM would split
/// the clauses), joins the shards cannot answer alone.
const DECLINED_WORDS: &[&str] = &[
    "select",
    "union",
    "intersect",
    "except",
    "with",
    "over",
    "window",
    "filter",
    "collate",
    "values",
    "exists",
    "raise",
    "natural",
    "right",
    "full",
    "indexed",
    "returning",
];

/// Checks the statement's words and the tables its FROM names.
fn check_tokens(lexemes: &[Lexeme], context: &Context<'_>) -> Option<()> {
    for (at, lexeme) in lexemes.iter().enumerate() {
        let token = &lexeme.token;
        if at > 0 && DECLINED_WORDS.iter().any(|w| token.is(w)) {
            return None;
        }
        if token.is_symbol(";") {
            return None;
        }
        if token.is("distinct") && at > 1 {
            return None;
        }
        if let Some(name) = token.name()
            && (context.views.contains(&name)
                || name.starts_with("sqlite_")
                || name.starts_with("pragma_"))
        {
            return None;
        }
        // LEFT JOIN only onto a reference table: each shard then keeps its own rows whole.
        if token.is("left") {
            let joined = lexemes[at + 1..]
                .iter()
                .find(|l| !l.token.is("outer") && !l.token.is("join"))?;
            if !joined
                .token
                .name()
                .is_some_and(|name| context.references.contains(&name))
            {
                return None;
            }
        }
    }
    Some(())
}

/// One projection item.
struct Item<'l> {
    expr: &'l [Lexeme],
    /// Its alias (lower-case), written with or without AS.
    alias: Option<String>,
    /// `*` or `table.*`.
    star: bool,
}

/// The projection's items.
fn items(projection: &[Lexeme]) -> Option<Vec<Item<'_>>> {
    split_commas(projection)?
        .into_iter()
        .map(|item| {
            let last = item.last()?;
            if last.token.is_symbol("*") {
                return Some(Item {
                    expr: item,
                    alias: None,
                    star: true,
                });
            }
            let n = item.len();
            if n >= 3 && item[n - 2].token.is("as") {
                return Some(Item {
                    expr: &item[..n - 2],
                    alias: Some(item[n - 1].token.name()?),
                    star: false,
                });
            }
            if n >= 2 && is_name(&last.token) && ends_value(&item[n - 2].token) {
                return Some(Item {
                    expr: &item[..n - 1],
                    alias: last.token.name(),
                    star: false,
                });
            }
            Some(Item {
                expr: item,
                alias: None,
                star: false,
            })
        })
        .collect()
}

/// Splits `lexemes` at its depth-0 commas; `None` when a part is empty or parentheses do not
/// balance.
fn split_commas(lexemes: &[Lexeme]) -> Option<Vec<&[Lexeme]>> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (at, lexeme) in lexemes.iter().enumerate() {
        match &lexeme.token {
            Token::Symbol(s) if s == "(" => depth += 1,
            Token::Symbol(s) if s == ")" => depth -= 1,
            Token::Symbol(s) if s == "," && depth == 0 => {
                parts.push(&lexemes[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&lexemes[start..]);
    (depth == 0 && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

/// SQL words that are never a column's name in an expression this tier takes.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "like",
    "glob",
    "regexp",
    "match",
    "between",
    "case",
    "when",
    "then",
    "else",
    "end",
    "cast",
    "as",
    "escape",
    "isnull",
    "notnull",
    "true",
    "false",
    "asc",
    "desc",
    "nulls",
    "first",
    "last",
    "current_date",
    "current_time",
    "current_timestamp",
    "distinct",
    "all",
    "from",
    "where",
    "group",
    "by",
    "having",
    "order",
    "limit",
    "offset",
    "join",
    "inner",
    "cross",
    "left",
    "outer",
    "on",
    "using",
    "select",
];

fn is_keyword(token: &Token) -> bool {
    matches!(token, Token::Word(word) if KEYWORDS.contains(&word.as_str()))
}

/// A name: an unquoted word that is not a keyword, or a quoted name.
fn is_name(token: &Token) -> bool {
    match token {
        Token::Word(_) => !is_keyword(token),
        Token::Quoted(_) => true,
        _ => false,
    }
}

/// Whether an expression can end with `token` (so a name after it is an alias).
fn ends_value(token: &Token) -> bool {
    match token {
        Token::Number(_) | Token::Text(_) | Token::Blob(_) | Token::Quoted(_) => true,
        Token::Symbol(s) => s == ")",
        Token::Word(word) => {
            !is_keyword(token)
                || matches!(
                    word.as_str(),
                    "null"
                        | "true"
                        | "false"
                        | "end"
                        | "current_date"
                        | "current_time"
                        | "current_timestamp"
                )
        }
        Token::Param(_) => true,
    }
}

/// The aggregates this tier splits into partials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Count,
    Sum,
    Total,
    Avg,
    Min,
    Max,
}

impl Aggregate {
    /// The aggregate a call of `name` with `arguments` arguments is, if it is one (`min` and
    /// `max` with several arguments are scalar functions).
    fn of(name: &str, arguments: usize) -> Option<Aggregate> {
        match (name, arguments) {
            ("count", 1) => Some(Aggregate::Count),
            ("sum", 1) => Some(Aggregate::Sum),
            ("total", 1) => Some(Aggregate::Total),
            ("avg", 1) => Some(Aggregate::Avg),
            ("min", 1) => Some(Aggregate::Min),
            ("max", 1) => Some(Aggregate::Max),
            _ => None,
        }
    }
}

/// Whether a call of `name` with `arguments` arguments is an aggregate (or a misuse of one):
/// `min` and `max` are scalar with two or more.
fn is_aggregate_name(name: &str, arguments: usize) -> bool {
    match name {
        "count" | "sum" | "total" | "avg" => true,
        "min" | "max" => arguments < 2,
        _ => OTHER_AGGREGATES.contains(&name),
    }
}

/// Aggregate functions this tier does not split: a statement calling one is gathered.
const OTHER_AGGREGATES: &[&str] = &[
    "group_concat",
    "string_agg",
    "json_group_array",
    "json_group_object",
    "jsonb_group_array",
    "jsonb_group_object",
    "median",
    "percentile",
    "percentile_cont",
    "percentile_disc",
];

/// Scalar functions a shard computes exactly as one database would (deterministic, or
/// random per row either way); any other function sends the statement to the gather tier.
const SCALAR_FUNCTIONS: &[&str] = &[
    "abs",
    "coalesce",
    "ifnull",
    "iif",
    "if",
    "nullif",
    "length",
    "octet_length",
    "lower",
    "upper",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "round",
    "typeof",
    "instr",
    "hex",
    "unhex",
    "quote",
    "char",
    "unicode",
    "printf",
    "format",
    "like",
    "glob",
    "min",
    "max",
    "random",
    "randomblob",
    "zeroblob",
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "likely",
    "unlikely",
    "likelihood",
    "sign",
    "ceil",
    "ceiling",
    "floor",
    "trunc",
    "exp",
    "ln",
    "log",
    "log10",
    "log2",
    "pow",
    "power",
    "sqrt",
    "mod",
    "pi",
    "sin",
    "cos",
    "tan",
    "concat",
    "concat_ws",
    "json",
    "json_extract",
    "json_type",
    "json_valid",
    "json_array",
    "json_object",
    "json_quote",
    "json_array_length",
];

/// The statement being planned.
struct Query<'a> {
    sql: &'a str,
    select: &'a Select<'a>,
    context: &'a Context<'a>,
    items: Vec<Item<'a>>,
    /// The projection's aliases (lower-case).
    aliases: BTreeSet<String>,
}

/// A function call found in an expression: its name, and the indexes of its parentheses.
struct Call {
    name: String,
    open: usize,
    close: usize,
}

impl<'a> Query<'a> {
    /// The text of `lexemes` as written (from the first's start to the last's end).
    fn text(&self, lexemes: &[Lexeme]) -> String {
        match (lexemes.first(), lexemes.last()) {
            (Some(first), Some(last)) => self.sql[first.start..last.end].to_string(),
            _ => String::new(),
        }
    }

    /// Parameters only in FROM and WHERE: the shards' query keeps those clauses in place, so
    /// the statement's parameters bind to it as they would to the original.
    fn check_parameters(&self) -> Option<()> {
        let elsewhere = [
            Some(self.select.projection),
            self.select.group_by,
            self.select.having,
            self.select.order_by,
            self.select.limit,
        ];
        let any = elsewhere
            .into_iter()
            .flatten()
            .flatten()
            .any(|l| matches!(l.token, Token::Param(_)));
        (!any).then_some(())
    }

    /// Every function called is a known scalar function or a splittable aggregate; no name in
    /// WHERE or an aggregate's argument is a projection alias (SQLite would read the alias
    /// there, and the shards' projection has none).
    fn check_functions(&self) -> Option<()> {
        let aliases = &self.aliases;
        let all = self.select.projection.iter().chain(self.select.from.iter());
        let lexemes: Vec<&Lexeme> = all
            .chain(self.select.filter.into_iter().flatten())
            .chain(self.select.group_by.into_iter().flatten())
            .chain(self.select.having.into_iter().flatten())
            .chain(self.select.order_by.into_iter().flatten())
            .collect();
        for (at, lexeme) in lexemes.iter().enumerate() {
            let Token::Word(word) = &lexeme.token else {
                continue;
            };
            let called = lexemes.get(at + 1).is_some_and(|l| l.token.is_symbol("("));
            if called && !is_keyword(&lexeme.token) {
                let known = SCALAR_FUNCTIONS.contains(&word.as_str())
                    || matches!(word.as_str(), "count" | "sum" | "total" | "avg");
                if !known || OTHER_AGGREGATES.contains(&word.as_str()) {
                    return None;
                }
            }
        }
        for lexeme in self.select.filter.into_iter().flatten() {
            if lexeme.token.name().is_some_and(|n| aliases.contains(&n)) {
                return None;
            }
        }
        Some(())
    }

    /// The function calls in `tokens`, outermost first.
    fn calls(tokens: &[Lexeme]) -> Option<Vec<Call>> {
        let mut calls = Vec::new();
        for (at, lexeme) in tokens.iter().enumerate() {
            let Token::Word(word) = &lexeme.token else {
                continue;
            };
            if is_keyword(&lexeme.token)
                || !tokens.get(at + 1).is_some_and(|l| l.token.is_symbol("("))
            {
                continue;
            }
            let close = matching(tokens, at + 1)?;
            calls.push(Call {
                name: word.clone(),
                open: at + 1,
                close,
            });
        }
        Some(calls)
    }

    /// Whether the statement aggregates (`None`: it aggregates in a way this tier does not
    /// split).
    fn aggregates(&self) -> Option<bool> {
        let mut found = self.select.group_by.is_some() || self.select.having.is_some();
        for part in [Some(self.select.projection), self.select.order_by]
            .into_iter()
            .flatten()
        {
            for call in Self::calls(part)? {
                let arguments =
                    split_commas(&part[call.open + 1..call.close]).map_or(0, |a| a.len());
                if is_aggregate_name(&call.name, arguments) {
                    found = true;
                }
            }
        }
        Some(found)
    }

    /// The plan of an aggregating statement.
    fn aggregate_plan(&self) -> Option<(String, String, usize, Vec<usize>)> {
        let select = self.select;
        // The grouping expressions: GROUP BY's terms, a position read as its projection item.
        let mut groups: Vec<&[Lexeme]> = Vec::new();
        for term in select
            .group_by
            .map(split_commas)
            .unwrap_or(Some(Vec::new()))?
        {
            if let [only] = term {
                if let Token::Number(n) = &only.token {
                    let item = self.items.get(n.parse::<usize>().ok()?.checked_sub(1)?)?;
                    if item.star {
                        return None;
                    }
                    groups.push(item.expr);
                    continue;
                }
                if only.token.name().is_some_and(|n| self.aliases.contains(&n)) {
                    return None;
                }
            }
            groups.push(term);
        }
        let mut env = Partials {
            groups: groups.iter().map(|g| tokens_of(g)).collect(),
            shard: groups.iter().map(|g| self.text(g)).collect(),
            sums: Vec::new(),
            aliases: self.aliases.clone(),
        };
        let mut merge_items = Vec::new();
        for item in &self.items {
            if item.star {
                return None;
            }
            let mut text = self.merge_expr(item.expr, &mut env, false)?;
            if let Some(alias) = &item.alias {
                text = format!("{text} AS {}", quote_identifier(alias));
            }
            merge_items.push(text);
        }
        let having = match select.having {
            Some(having) => Some(self.merge_expr(having, &mut env, false)?),
            None => None,
        };
        let order = match select.order_by {
            Some(order) => Some(self.merge_order(order, &mut env)?),
            None => None,
        };
        let mut shard_sql = format!(
            "SELECT {} FROM {}",
            env.shard.join(", "),
            self.text(select.from)
        );
        if let Some(filter) = select.filter {
            shard_sql.push_str(&format!(" WHERE {}", self.text(filter)));
        }
        if !groups.is_empty() {
            let positions: Vec<String> = (1..=groups.len()).map(|i| i.to_string()).collect();
            shard_sql.push_str(&format!(" GROUP BY {}", positions.join(", ")));
        }
        let mut merge_sql = format!(
            "SELECT {}{} FROM {PARTIALS}",
            if select.distinct { "DISTINCT " } else { "" },
            merge_items.join(", ")
        );
        if !groups.is_empty() {
            let columns: Vec<String> = (0..groups.len()).map(|i| format!("p{i}")).collect();
            merge_sql.push_str(&format!(" GROUP BY {}", columns.join(", ")));
        }
        if let Some(having) = having {
            merge_sql.push_str(&format!(" HAVING {having}"));
        }
        if let Some(order) = order {
            merge_sql.push_str(&format!(" ORDER BY {order}"));
        }
        if let Some(limit) = select.limit {
            merge_sql.push_str(&format!(" LIMIT {}", self.text(limit)));
        }
        if env.shard.is_empty() {
            return None;
        }
        Some((shard_sql, merge_sql, env.shard.len(), env.sums))
    }

    /// ORDER BY of an aggregating statement, over the merged groups: positions and aliases
    /// as written (the merge keeps the projection's order and aliases).
    fn merge_order(&self, order: &[Lexeme], env: &mut Partials) -> Option<String> {
        let mut terms = Vec::new();
        for term in split_commas(order)? {
            let (expr, direction) = split_direction(term);
            let text = match expr {
                [only] if matches!(only.token, Token::Number(_)) => self.text(expr),
                [only] if only.token.name().is_some_and(|n| env.aliases.contains(&n)) => {
                    self.text(expr)
                }
                _ => self.merge_expr(expr, env, true)?,
            };
            terms.push(format!("{text}{}", words(direction)));
        }
        Some(terms.join(", "))
    }

    /// `expr` over the merged groups: aggregates replaced by the combination of their
    /// partials, grouping expressions and their columns by the partial columns holding them.
    /// `None` when it reads a column that is neither (SQLite's bare column: gathered).
    fn merge_expr(&self, expr: &[Lexeme], env: &mut Partials, in_order: bool) -> Option<String> {
        let whole = tokens_of(expr);
        if let Some(group) = env.groups.iter().position(|g| *g == whole) {
            return Some(format!("p{group}"));
        }
        let cast_types = cast_type_names(expr)?;
        let mut out: Vec<String> = Vec::new();
        let mut at = 0;
        while at < expr.len() {
            let lexeme = &expr[at];
            let token = &lexeme.token;
            if cast_types.contains(&at) {
                out.push(self.text(std::slice::from_ref(lexeme)));
                at += 1;
                continue;
            }
            let called = expr.get(at + 1).is_some_and(|l| l.token.is_symbol("("));
            if let Token::Word(word) = token
                && called
                && !is_keyword(token)
            {
                let close = matching(expr, at + 1)?;
                let arguments = &expr[at + 2..close];
                let count = split_commas(arguments).map_or(0, |a| a.len());
                if let Some(aggregate) = Aggregate::of(word, count) {
                    out.push(format!("({})", env.partial(self, aggregate, arguments)?));
                    at = close + 1;
                    continue;
                }
                if is_aggregate_name(word, count) {
                    return None;
                }
                out.push(word.clone());
                at += 1;
                continue;
            }
            if is_name(token) {
                // A column reference, perhaps qualified: `a`, `t.a`, `main.t.a`.
                let mut end = at + 1;
                while expr.get(end).is_some_and(|l| l.token.is_symbol("."))
                    && expr.get(end + 1).is_some_and(|l| is_name(&l.token))
                {
                    end += 2;
                }
                let reference = tokens_of(&expr[at..end]);
                if let Some(group) = env.groups.iter().position(|g| *g == reference) {
                    out.push(format!("p{group}"));
                } else if in_order
                    && end == at + 1
                    && token.name().is_some_and(|n| env.aliases.contains(&n))
                {
                    out.push(self.text(&expr[at..end]));
                } else {
                    return None;
                }
                at = end;
                continue;
            }
            if matches!(token, Token::Param(_)) {
                return None;
            }
            out.push(self.text(std::slice::from_ref(lexeme)));
            at += 1;
        }
        Some(out.join(" "))
    }

    /// The plan of a statement without aggregates: its rows from every shard, merged.
    fn rows_plan(&self) -> Option<(String, String, usize, Vec<usize>)> {
        let select = self.select;
        let width = self.context.columns.len();
        // The result column each non-star item is, when no star comes before it.
        let position_of = |index: usize| -> Option<usize> {
            (!self.items[..index].iter().any(|i| i.star)).then_some(index)
        };
        let mut hidden: Vec<String> = Vec::new();
        let mut keys: Vec<(usize, String)> = Vec::new(); // (partial column, direction)
        let aliases = &self.aliases;
        for term in select
            .order_by
            .map(split_commas)
            .unwrap_or(Some(Vec::new()))?
        {
            let (expr, direction) = split_direction(term);
            let direction = words(direction);
            if let [only] = expr {
                if let Token::Number(n) = &only.token {
                    let position = n.parse::<usize>().ok()?.checked_sub(1)?;
                    if position >= width {
                        return None;
                    }
                    keys.push((position, direction));
                    continue;
                }
                if let Some(name) = only.token.name()
                    && aliases.contains(&name)
                {
                    let index = self
                        .items
                        .iter()
                        .position(|i| i.alias.as_ref() == Some(&name))?;
                    keys.push((position_of(index)?, direction));
                    continue;
                }
            }
            let same = tokens_of(expr);
            if let Some(index) = self
                .items
                .iter()
                .position(|i| !i.star && tokens_of(i.expr) == same)
                && let Some(position) = position_of(index)
            {
                keys.push((position, direction));
                continue;
            }
            if select.distinct
                || expr
                    .iter()
                    .any(|l| l.token.name().is_some_and(|n| aliases.contains(&n)))
            {
                return None;
            }
            keys.push((width + hidden.len(), direction));
            hidden.push(format!("({})", self.text(expr)));
        }
        let tie_break = self.context.rowid_order && !select.distinct;
        let rowid_column = width + hidden.len();
        if tie_break {
            hidden.push("_rowid_".into());
            keys.push((rowid_column, String::new()));
        }
        let mut shard_sql = format!(
            "SELECT {}{}{} FROM {}",
            if select.distinct { "DISTINCT " } else { "" },
            self.text(select.projection),
            hidden.iter().map(|h| format!(", {h}")).collect::<String>(),
            self.text(select.from)
        );
        if let Some(filter) = select.filter {
            shard_sql.push_str(&format!(" WHERE {}", self.text(filter)));
        }
        let order_by = |column: fn(usize) -> String| {
            keys.iter()
                .map(|(at, direction)| format!("{}{direction}", column(*at)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // A LIMIT of whole numbers, pushed down when the order is total (it ends with the
        // rowid): the first rows overall are among each shard's first rows.
        if tie_break && let Some(limit) = select.limit {
            let numbers: Option<Vec<u64>> = limit
                .iter()
                .filter(|l| !l.token.is("offset") && !l.token.is_symbol(","))
                .map(|l| match &l.token {
                    Token::Number(n) => n.parse::<u64>().ok(),
                    _ => None,
                })
                .collect();
            if let Some(total) =
                numbers.and_then(|numbers| numbers.iter().try_fold(0u64, |a, n| a.checked_add(*n)))
            {
                shard_sql.push_str(&format!(
                    " ORDER BY {} LIMIT {total}",
                    order_by(|at| (at + 1).to_string())
                ));
            }
        }
        let columns: Vec<String> = (0..width).map(|i| format!("p{i}")).collect();
        let mut merge_sql = format!(
            "SELECT {}{} FROM {PARTIALS}",
            if select.distinct { "DISTINCT " } else { "" },
            columns.join(", ")
        );
        if !keys.is_empty() {
            merge_sql.push_str(&format!(" ORDER BY {}", order_by(|at| format!("p{at}"))));
        }
        if let Some(limit) = select.limit {
            merge_sql.push_str(&format!(" LIMIT {}", self.text(limit)));
        }
        Some((shard_sql, merge_sql, width + hidden.len(), Vec::new()))
    }
}

/// The partial columns an aggregating statement's shards return.
struct Partials {
    /// The grouping expressions' tokens; column `p{i}` holds the i-th.
    groups: Vec<Vec<Token>>,
    /// Each partial column's expression, as the shards compute it.
    shard: Vec<String>,
    sums: Vec<usize>,
    aliases: BTreeSet<String>,
}

impl Partials {
    /// The merge's expression for `aggregate` over `arguments`, adding the partial columns it
    /// combines (shared with an identical call already seen).
    fn partial(
        &mut self,
        query: &Query<'_>,
        aggregate: Aggregate,
        arguments: &[Lexeme],
    ) -> Option<String> {
        if arguments.iter().any(|l| {
            l.token.name().is_some_and(|n| self.aliases.contains(&n))
                || matches!(l.token, Token::Param(_))
        }) || arguments.first().is_some_and(|l| l.token.is("distinct"))
            || Query::calls(arguments)?.iter().any(|call| {
                let count =
                    split_commas(&arguments[call.open + 1..call.close]).map_or(0, |a| a.len());
                Aggregate::of(&call.name, count).is_some()
            })
        {
            return None;
        }
        let argument = query.text(arguments);
        let mut column = |shard: String, sum: bool| {
            let at = match self.shard.iter().position(|s| *s == shard) {
                Some(at) => at,
                None => {
                    self.shard.push(shard);
                    self.shard.len() - 1
                }
            };
            if sum && !self.sums.contains(&at) {
                self.sums.push(at);
            }
            format!("p{at}")
        };
        Some(match aggregate {
            Aggregate::Count => format!("sum({})", column(format!("count({argument})"), false)),
            Aggregate::Sum => format!("sum({})", column(format!("sum({argument})"), true)),
            Aggregate::Total => format!("total({})", column(format!("sum({argument})"), true)),
            Aggregate::Avg => {
                let sum = column(format!("sum({argument})"), true);
                let count = column(format!("count({argument})"), false);
                format!(
                    "CASE WHEN sum({count}) > 0 THEN CAST(sum({sum}) AS REAL) / sum({count}) END"
                )
            }
            Aggregate::Min => format!("min({})", column(format!("min({argument})"), false)),
            Aggregate::Max => format!("max({})", column(format!("max({argument})"), false)),
        })
    }
}

/// The tokens of `lexemes`, for comparing expressions as SQLite would read them.
fn tokens_of(lexemes: &[Lexeme]) -> Vec<Token> {
    lexemes.iter().map(|l| l.token.clone()).collect()
}

/// The index of the `)` closing the `(` at `open`.
fn matching(lexemes: &[Lexeme], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (at, lexeme) in lexemes.iter().enumerate().skip(open) {
        if lexeme.token.is_symbol("(") {
            depth += 1;
        } else if lexeme.token.is_symbol(")") {
            depth -= 1;
            if depth == 0 {
                return Some(at);
            }
        }
    }
    None
}

/// The indexes of the type names in `CAST(x AS type)` calls (words, not columns).
fn cast_type_names(expr: &[Lexeme]) -> Option<BTreeSet<usize>> {
    let mut names = BTreeSet::new();
    for (at, lexeme) in expr.iter().enumerate() {
        if !lexeme.token.is("cast") || !expr.get(at + 1).is_some_and(|l| l.token.is_symbol("(")) {
            continue;
        }
        let close = matching(expr, at + 1)?;
        let mut depth = 0;
        let mut last_as = None;
        for (inner, l) in expr.iter().enumerate().take(close).skip(at + 2) {
            match &l.token {
                Token::Symbol(s) if s == "(" => depth += 1,
                Token::Symbol(s) if s == ")" => depth -= 1,
                token if depth == 0 && token.is("as") => last_as = Some(inner),
                _ => {}
            }
        }
        names.extend(last_as? + 1..close);
    }
    Some(names)
}

/// An ORDER BY term's expression and its trailing `ASC`/`DESC`/`NULLS FIRST|LAST` words.
fn split_direction(term: &[Lexeme]) -> (&[Lexeme], &[Lexeme]) {
    let mut end = term.len();
    while end > 1 {
        let token = &term[end - 1].token;
        let direction = token.is("asc") || token.is("desc") || token.is("nulls");
        let nulls_place =
            (token.is("first") || token.is("last")) && end >= 2 && term[end - 2].token.is("nulls");
        if nulls_place {
            end -= 2;
        } else if direction {
            end -= 1;
        } else {
            break;
        }
    }
    (&term[..end], &term[end..])
}

/// Direction words, upper-case, each preceded by a space.
fn words(lexemes: &[Lexeme]) -> String {
    lexemes
        .iter()
        .filter_map(|l| match &l.token {
            Token::Word(word) => Some(format!(" {}", word.to_ascii_uppercase())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context<'a>(
        references: &'a BTreeSet<String>,
        views: &'a BTreeSet<String>,
        columns: &[&str],
    ) -> Context<'a> {
        Context {
            distributed: "orders",
            references,
            views,
            rowid_order: true,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            declared: columns.iter().map(|_| None).collect(),
        }
    }

    fn plan(sql: &str, columns: &[&str]) -> Option<Scatter> {
        let references = BTreeSet::from(["countries".to_string()]);
        let views = BTreeSet::from(["recent".to_string()]);
        rewrite(sql, &context(&references, &views, columns))
    }

    #[test]
    fn aggregates_become_partials_combined_by_the_merge() {
        let scatter = plan(
            "SELECT customer, count(*), sum(total) AS spent, avg(total) FROM orders \
             WHERE total > ?1 GROUP BY customer HAVING count(*) > 1 ORDER BY spent DESC LIMIT 3",
            &["customer", "count(*)", "spent", "avg(total)"],
        )
        .unwrap();
        assert_eq!(
            scatter.shard_sql,
            "SELECT customer, count(*), sum(total), count(total) FROM orders WHERE total > ?1 \
             GROUP BY 1"
        );
        assert_eq!(
            scatter.merge_sql,
            "SELECT p0, (sum(p1)), (sum(p2)) AS \"spent\", (CASE WHEN sum(p3) > 0 THEN \
             CAST(sum(p2) AS REAL) / sum(p3) END) FROM shoal_partials GROUP BY p0 HAVING \
             (sum(p1)) > 1 ORDER BY spent DESC LIMIT 3"
        );
        assert_eq!(scatter.partial_columns, 4);
        assert_eq!(scatter.sums, vec![2]);
    }

    #[test]
    fn expressions_over_groups_and_aggregates_are_rewritten_around_them() {
        let scatter = plan(
            "SELECT ALL - col1 * 2, + COUNT ( * ), CAST(col1 AS TEXT) FROM orders GROUP BY col1",
            &["a", "b", "c"],
        )
        .unwrap();
        assert_eq!(
            scatter.shard_sql,
            "SELECT col1, count(*) FROM orders GROUP BY 1"
        );
        assert_eq!(
            scatter.merge_sql,
            "SELECT - p0 * 2, + (sum(p1)), CAST ( p0 AS TEXT ) FROM shoal_partials GROUP BY p0"
        );
    }

    #[test]
    fn rows_are_merged_in_order_with_the_rowid_breaking_ties() {
        let scatter = plan(
            "SELECT id, total FROM orders WHERE total > 5 ORDER BY total DESC, 1 LIMIT 10 OFFSET 5",
            &["id", "total"],
        )
        .unwrap();
        assert_eq!(
            scatter.shard_sql,
            "SELECT id, total, _rowid_ FROM orders WHERE total > 5 ORDER BY 2 DESC, 1, 3 LIMIT 15"
        );
        assert_eq!(
            scatter.merge_sql,
            "SELECT p0, p1 FROM shoal_partials ORDER BY p1 DESC, p0, p2 LIMIT 10 OFFSET 5"
        );
    }

    #[test]
    fn an_order_by_expression_is_computed_by_the_shards() {
        let scatter = plan("SELECT * FROM orders ORDER BY total * 2", &["id", "total"]).unwrap();
        assert_eq!(
            scatter.shard_sql,
            "SELECT *, (total * 2), _rowid_ FROM orders"
        );
        assert_eq!(
            scatter.merge_sql,
            "SELECT p0, p1 FROM shoal_partials ORDER BY p2, p3"
        );
    }

    #[test]
    fn a_join_with_a_reference_table_is_answered_by_each_shard() {
        let scatter = plan(
            "SELECT c.name, count(*) FROM orders o LEFT JOIN countries c ON c.code = o.country \
             GROUP BY c.name",
            &["name", "count(*)"],
        )
        .unwrap();
        assert_eq!(
            scatter.shard_sql,
            "SELECT c.name, count(*) FROM orders o LEFT JOIN countries c ON c.code = o.country \
             GROUP BY 1"
        );
    }

    #[test]
    fn what_the_shards_cannot_answer_exactly_is_gathered() {
        for sql in [
            "SELECT count(DISTINCT total) FROM orders",
            "SELECT group_concat(id) FROM orders",
            "SELECT id, max(total) FROM orders",
            "SELECT total FROM orders GROUP BY customer",
            "SELECT * FROM orders WHERE id IN (SELECT id FROM orders)",
            "SELECT id FROM orders UNION SELECT id FROM orders",
            "SELECT row_number() OVER () FROM orders",
            "SELECT name FROM orders ORDER BY name COLLATE NOCASE",
            "SELECT * FROM countries LEFT JOIN orders ON code = country",
            "SELECT * FROM recent",
            "SELECT my_function(id) FROM orders",
            "SELECT count(*) FROM orders GROUP BY ?1",
            "SELECT a AS b FROM orders WHERE b > 1",
            "SELECT count(*) FROM orders; SELECT 1",
        ] {
            assert_eq!(plan(sql, &["x"]), None, "{sql}");
        }
    }
}
