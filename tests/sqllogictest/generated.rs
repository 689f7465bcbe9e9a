//! A seeded generator of SQL workloads for differential testing: schema changes (tables with
//! assorted column types and constraints, indexes, views, triggers, ALTER TABLE, DROP and
//! re-CREATE), writes (INSERT variants, UPDATE, DELETE, INSERT … SELECT) and queries (random
//! expressions, WHERE, joins, GROUP BY/HAVING, aggregates, subqueries, LIMIT).
//!
//! The generator has no expected results: the same steps run on Shoal and on plain SQLite and
//! must give the same answers, errors included. It therefore avoids what is meant to differ
//! (random(), the clock, random rowids after i64::MAX) and BLOB values (Shoal's JSON renders them as base64). Some steps are
//! wrong on purpose (constraint violations, integer overflow, unknown columns) so that errors
//! are compared too.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One step of a generated workload.
#[derive(Debug, Clone)]
pub enum Step {
    /// A statement that changes the database (or fails, identically everywhere).
    Statement(String),
    /// A read-only query; rows are compared as a multiset.
    Query(String),
}

impl Step {
    pub fn sql(&self) -> &str {
        match self {
            Step::Statement(sql) | Step::Query(sql) => sql,
        }
    }
}

const COLUMN_TYPES: [&str; 6] = ["INTEGER", "REAL", "TEXT", "NUMERIC", "", "VARCHAR(10)"];
const TABLE_NAMES: [&str; 4] = ["t1", "t2", "t3", "t4"];
const WORDS: [&str; 10] = ["", "a", "b", "ab", "Abc", "x y", "it's", "%", "100", "1e3"];

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<String>,
}

/// What the generator believes exists; statements that fail leave it a little wrong on
/// purpose, which only makes later statements fail identically on both sides.
struct Model {
    tables: Vec<Table>,
    views: Vec<Table>,
    indexes: Vec<String>,
    next_object: usize,
}

/// The generator: a model of the schema and a seeded random source.
pub struct Generator {
    rng: ChaCha8Rng,
    model: Model,
    /// Every table has `c0 INTEGER PRIMARY KEY` and every row gives it an integer: rowids are
    /// never chosen by the database, for a sharded database, whose new rowids come from a
    /// sequence (unique across groups) rather than SQLite's largest-plus-one.
    explicit_keys: bool,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            model: Model {
                tables: Vec::new(),
                views: Vec::new(),
                indexes: Vec::new(),
                next_object: 0,
            },
            explicit_keys: false,
        }
    }

    /// A generator whose rows always give their rowid (`explicit_keys`).
    pub fn with_explicit_keys(seed: u64) -> Generator {
        Generator {
            explicit_keys: true,
            ..Generator::new(seed)
        }
    }

    /// `count` steps: a schema first, then a mix weighted towards writes and queries.
    pub fn steps(&mut self, count: usize) -> Vec<Step> {
        let mut steps = Vec::with_capacity(count);
        for name in &TABLE_NAMES[..2] {
            steps.push(self.create_table(name));
        }
        while steps.len() < count {
            let step = match self.rng.random_range(0..100) {
                0..=2 => self.recreate_table(),
                3..=4 => self.create_index(),
                5 => self.drop_index(),
                6..=7 => self.create_view(),
                8 => self.alter_table(),
                9 => self.create_trigger(),
                10..=34 => self.insert(),
                35..=41 => self.update(),
                42..=45 => self.delete(),
                _ => self.query(),
            };
            steps.push(step);
        }
        steps
    }

    fn fresh_name(&mut self, prefix: &str) -> String {
        self.model.next_object += 1;
        format!("{prefix}{}", self.model.next_object)
    }

    fn create_table(&mut self, name: &str) -> Step {
        let width = self.rng.random_range(1..=5);
        let mut columns = Vec::with_capacity(width);
        let mut definitions = Vec::with_capacity(width);
        for index in 0..width {
            let column = format!("c{index}");
            let kind = *COLUMN_TYPES.choose(&mut self.rng).unwrap_or(&"");
            let mut definition = format!("{column} {kind}");
            if index == 0 && (self.explicit_keys || self.rng.random_bool(0.3)) {
                definition = format!("{column} INTEGER PRIMARY KEY");
            } else {
                match self.rng.random_range(0..10) {
                    0 => definition.push_str(" UNIQUE"),
                    1 => definition.push_str(" NOT NULL DEFAULT 0"),
                    2 => {
                        let literal = self.literal();
                        definition.push_str(&format!(" DEFAULT ({literal})"));
                    }
                    3 => {
                        definition.push_str(&format!(" CHECK ({column} IS NULL OR {column} <> 13)"))
                    }
                    _ => {}
                }
            }
            definitions.push(definition);
            columns.push(column);
        }
        self.model.tables.retain(|t| t.name != name);
        self.model.tables.push(Table {
            name: name.to_string(),
            columns,
        });
        Step::Statement(format!("CREATE TABLE {name}({})", definitions.join(", ")))
    }

    /// Drops a table (which drops its indexes and triggers) and creates one of the same name
    /// with other columns: replicas' cached schemas must follow.
    fn recreate_table(&mut self) -> Step {
        let name = *TABLE_NAMES.choose(&mut self.rng).unwrap_or(&"t1");
        let exists = self.model.tables.iter().any(|t| t.name == name);
        if exists && self.rng.random_bool(0.5) {
            self.model.tables.retain(|t| t.name != name);
            Step::Statement(format!("DROP TABLE {name}"))
        } else if exists {
            self.model.tables.retain(|t| t.name != name);
            let create = self.create_table(name);
            Step::Statement(format!("DROP TABLE {name}; {}", create.sql()))
        } else {
            self.create_table(name)
        }
    }

    fn create_index(&mut self) -> Step {
        let Some(table) = self.table() else {
            return self.create_table("t1");
        };
        let name = self.fresh_name("i");
        let column = self.column_of(&table);
        let unique = if self.rng.random_bool(0.2) {
            "UNIQUE "
        } else {
            ""
        };
        let filter = if self.rng.random_bool(0.2) {
            format!(" WHERE {column} IS NOT NULL")
        } else {
            String::new()
        };
        self.model.indexes.push(name.clone());
        Step::Statement(format!(
            "CREATE {unique}INDEX {name} ON {}({column}){filter}",
            table.name
        ))
    }

    fn drop_index(&mut self) -> Step {
        match self.model.indexes.pop() {
            Some(name) => Step::Statement(format!("DROP INDEX IF EXISTS {name}")),
            None => self.create_index(),
        }
    }

    fn create_view(&mut self) -> Step {
        let Some(table) = self.table() else {
            return self.create_table("t1");
        };
        let name = self.fresh_name("v");
        let width = table.columns.len().min(2);
        let mut select = Vec::with_capacity(width);
        let mut columns = Vec::with_capacity(width);
        for index in 0..width {
            let expression = self.expression(&[&table], 2);
            select.push(format!("{expression} AS c{index}"));
            columns.push(format!("c{index}"));
        }
        let filter = self.expression(&[&table], 2);
        self.model.views.push(Table {
            name: name.clone(),
            columns,
        });
        Step::Statement(format!(
            "CREATE VIEW {name} AS SELECT {} FROM {} WHERE {filter}",
            select.join(", "),
            table.name
        ))
    }

    fn alter_table(&mut self) -> Step {
        let Some(table) = self.table() else {
            return self.create_table("t1");
        };
        let position = self.model.tables.iter().position(|t| t.name == table.name);
        let column = format!("c{}", table.columns.len());
        if let Some(position) = position {
            self.model.tables[position].columns.push(column.clone());
        }
        let kind = *COLUMN_TYPES.choose(&mut self.rng).unwrap_or(&"");
        Step::Statement(format!(
            "ALTER TABLE {} ADD COLUMN {column} {kind}",
            table.name
        ))
    }

    /// A trigger copying inserted rows' first column into another table, so one replicated
    /// statement changes two tables.
    fn create_trigger(&mut self) -> Step {
        let (Some(source), Some(target)) = (self.table(), self.table()) else {
            return self.create_table("t2");
        };
        let name = self.fresh_name("tr");
        let value = self.expression(&[], 1);
        let first = &source.columns[0];
        Step::Statement(format!(
            "CREATE TRIGGER {name} AFTER INSERT ON {} WHEN NEW.{first} IS NOT NULL BEGIN \
             INSERT OR IGNORE INTO {}({}) VALUES (NEW.{first} + 1000); \
             SELECT {value}; END",
            source.name, target.name, target.columns[0]
        ))
    }

    fn insert(&mut self) -> Step {
        let Some(table) = self.table() else {
            return self.create_table("t1");
        };
        let verb = *[
            "INSERT",
            "INSERT",
            "INSERT",
            "INSERT OR REPLACE",
            "INSERT OR IGNORE",
            "REPLACE",
        ]
        .choose(&mut self.rng)
        .unwrap_or(&"INSERT");
        if self.rng.random_bool(0.1)
            && let Some(source) = self.table()
        {
            let column = self.column_of(&source);
            let filter = if self.explicit_keys {
                format!(" WHERE typeof({column}) = 'integer'")
            } else {
                String::new()
            };
            return Step::Statement(format!(
                "{verb} INTO {}({}) SELECT {column} FROM {}{filter} LIMIT 5",
                table.name, table.columns[0], source.name
            ));
        }
        let rows = self.rng.random_range(1..=3);
        let tuples: Vec<String> = (0..rows)
            .map(|_| {
                let values: Vec<String> = (0..table.columns.len())
                    .map(|at| {
                        if at == 0 && self.explicit_keys {
                            self.rng.random_range(-5i64..40).to_string()
                        } else {
                            self.literal()
                        }
                    })
                    .collect();
                format!("({})", values.join(", "))
            })
            .collect();
        Step::Statement(format!(
            "{verb} INTO {} VALUES {}",
            table.name,
            tuples.join(", ")
        ))
    }

    fn update(&mut self) -> Step {
        let Some(table) = self.table() else {
            return self.create_table("t1");
        };
        let column = self.column_of(&table);
        let value = self.expression(&[&table], 2);
        let filter = self.expression(&[&table], 2);
        Step::Statement(format!(
            "UPDATE {} SET {column} = {value} WHERE {filter}",
            table.name
        ))
    }

    fn delete(&mut self) -> Step {
        let Some(table) = self.table() else {
            return self.create_table("t1");
        };
        let filter = self.expression(&[&table], 2);
        Step::Statement(format!("DELETE FROM {} WHERE {filter}", table.name))
    }

    fn query(&mut self) -> Step {
        let Some(first) = self.relation() else {
            return Step::Query("SELECT 1".into());
        };
        let joined = if self.rng.random_bool(0.25) {
            self.relation()
        } else {
            None
        };
        let (from, sources) = match &joined {
            Some(second) if second.name != first.name => (
                format!(
                    "{} {} {} ON {}",
                    first.name,
                    *["JOIN", "LEFT JOIN", "CROSS JOIN"]
                        .choose(&mut self.rng)
                        .unwrap_or(&"JOIN"),
                    second.name,
                    self.expression(&[&first, second], 1)
                ),
                vec![&first, second],
            ),
            _ => (first.name.clone(), vec![&first]),
        };
        let filter = if self.rng.random_bool(0.7) {
            format!(" WHERE {}", self.expression(&sources, 3))
        } else {
            String::new()
        };
        if self.rng.random_bool(0.3) {
            let key = self.expression(&sources, 1);
            let aggregate = self.aggregate(&sources);
            let having = if self.rng.random_bool(0.3) {
                format!(" HAVING count(*) > {}", self.rng.random_range(0..3))
            } else {
                String::new()
            };
            return Step::Query(format!(
                "SELECT {key}, {aggregate} FROM {from}{filter} GROUP BY 1{having}"
            ));
        }
        if self.rng.random_bool(0.15) {
            let aggregate = self.aggregate(&sources);
            return Step::Query(format!("SELECT {aggregate} FROM {from}{filter}"));
        }
        let width = self.rng.random_range(1..=3);
        let projection: Vec<String> = (0..width).map(|_| self.expression(&sources, 3)).collect();
        let limit = if self.rng.random_bool(0.2) {
            // Ordered by every output column so the rows LIMIT keeps are determined.
            let order: Vec<String> = (1..=width).map(|i| i.to_string()).collect();
            format!(
                " ORDER BY {} LIMIT {}",
                order.join(", "),
                self.rng.random_range(0..5)
            )
        } else {
            String::new()
        };
        let distinct = if self.rng.random_bool(0.15) {
            "DISTINCT "
        } else {
            ""
        };
        Step::Query(format!(
            "SELECT {distinct}{} FROM {from}{filter}{limit}",
            projection.join(", ")
        ))
    }

    fn aggregate(&mut self, sources: &[&Table]) -> String {
        let argument = self.expression(sources, 1);
        match self.rng.random_range(0..8) {
            0 => "count(*)".into(),
            1 => format!("count(DISTINCT {argument})"),
            2 => format!("sum({argument})"),
            3 => format!("total({argument})"),
            4 => format!("avg({argument})"),
            5 => format!("min({argument})"),
            6 => format!("max({argument})"),
            _ => format!("group_concat({argument}, '|' ORDER BY {argument})"),
        }
    }

    /// A random expression over `sources`' columns, at most `depth` operators deep.
    fn expression(&mut self, sources: &[&Table], depth: u32) -> String {
        let leaf = depth == 0 || self.rng.random_bool(0.3);
        if leaf {
            return match (sources.choose(&mut self.rng), self.rng.random_bool(0.6)) {
                (Some(table), true) => {
                    let column = self.column_of(table);
                    if sources.len() > 1 {
                        format!("{}.{column}", table.name)
                    } else {
                        column
                    }
                }
                _ => self.literal(),
            };
        }
        let sub = |generator: &mut Generator| generator.expression(sources, depth - 1);
        match self.rng.random_range(0..22) {
            0..=5 => {
                let operator = *[
                    "+", "-", "*", "/", "%", "||", "=", "<>", "<", ">=", "AND", "OR", "IS",
                    "IS NOT", "&", "|", "<<",
                ]
                .choose(&mut self.rng)
                .unwrap_or(&"+");
                format!("({} {operator} {})", sub(self), sub(self))
            }
            6 => format!("(-{})", sub(self)),
            7 => format!("(NOT {})", sub(self)),
            8 => {
                let function = *[
                    "abs", "length", "lower", "upper", "typeof", "hex", "trim", "quote", "sign",
                ]
                .choose(&mut self.rng)
                .unwrap_or(&"abs");
                format!("{function}({})", sub(self))
            }
            9 => format!("coalesce({}, {})", sub(self), sub(self)),
            10 => format!("nullif({}, {})", sub(self), sub(self)),
            11 => format!("substr({}, {}, {})", sub(self), sub(self), sub(self)),
            12 => format!("round({}, {})", sub(self), self.rng.random_range(0..3)),
            13 => {
                let kind = *["INTEGER", "REAL", "TEXT", "NUMERIC"]
                    .choose(&mut self.rng)
                    .unwrap_or(&"TEXT");
                format!("CAST({} AS {kind})", sub(self))
            }
            14 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                sub(self),
                sub(self),
                sub(self)
            ),
            15 => format!("({} BETWEEN {} AND {})", sub(self), sub(self), sub(self)),
            16 => format!("({} IN ({}, {}))", sub(self), sub(self), sub(self)),
            17 => format!("({} LIKE {})", sub(self), self.text_literal()),
            18 => format!("max({}, {})", sub(self), sub(self)),
            19 => format!("instr({}, {})", sub(self), sub(self)),
            20 => match self.model.tables.choose(&mut self.rng).cloned() {
                Some(table) => {
                    let column = self.column_of(&table);
                    format!("({} IN (SELECT {column} FROM {}))", sub(self), table.name)
                }
                None => sub(self),
            },
            _ => match self.model.tables.choose(&mut self.rng).cloned() {
                Some(table) => format!("(SELECT count(*) FROM {})", table.name),
                None => sub(self),
            },
        }
    }

    fn literal(&mut self) -> String {
        match self.rng.random_range(0..12) {
            0 => "NULL".into(),
            1..=4 => self.rng.random_range(-5i64..20).to_string(),
            // Not i64::MAX: a rowid table whose largest rowid is i64::MAX picks new rowids at
            // random, which Shoal makes deterministic per log entry and plain SQLite does not.
            5 => (*[1 << 62, i64::MIN + 1, 1 << 40, -(1 << 53)]
                .choose(&mut self.rng)
                .unwrap_or(&0))
            .to_string(),
            6..=7 => format!("{:.2}", self.rng.random_range(-100.0f64..100.0)),
            8 => "1.5e10".into(),
            _ => self.text_literal(),
        }
    }

    fn text_literal(&mut self) -> String {
        let word = *WORDS.choose(&mut self.rng).unwrap_or(&"a");
        format!("'{}'", word.replace('\'', "''"))
    }

    fn table(&mut self) -> Option<Table> {
        self.model.tables.choose(&mut self.rng).cloned()
    }

    /// A table or a view to read from.
    fn relation(&mut self) -> Option<Table> {
        if !self.model.views.is_empty() && self.rng.random_bool(0.2) {
            return self.model.views.choose(&mut self.rng).cloned();
        }
        self.table()
    }

    fn column_of(&mut self, table: &Table) -> String {
        if self.rng.random_bool(0.02) {
            // Names a column that does not exist: both sides must fail the same way.
            return "no_such_column".into();
        }
        table
            .columns
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_else(|| "rowid".into())
    }
}

#[test]
fn the_same_seed_gives_the_same_workload() {
    let first: Vec<String> = Generator::new(7)
        .steps(200)
        .iter()
        .map(|s| s.sql().to_string())
        .collect();
    let second: Vec<String> = Generator::new(7)
        .steps(200)
        .iter()
        .map(|s| s.sql().to_string())
        .collect();
    assert_eq!(first, second);
    let other: Vec<String> = Generator::new(8)
        .steps(200)
        .iter()
        .map(|s| s.sql().to_string())
        .collect();
    assert_ne!(first, other);
}
