//! The slot of a shard key (sharding's foundation; docs/sharding.md will describe its use).
//! A key is first stored the way its column stores it — SQLite's own affinity rules, applied
//! by SQLite — then put in a canonical form in which every two values SQLite compares equal
//! are the same bytes (`1`, `1.0` and `'1'` in an INTEGER column are all the integer 1; `-0.0`
//! is `0`; an integral REAL is its integer), then hashed with CRC-32C into one of [`SLOTS`].
//! The slot of a key is part of the on-disk format (rows live in the group owning their slot):
//! [`SLOT_FORMAT`] names this definition, and any change to it is a new format.

use rusqlite::Connection;

use crate::types::value::SqlValue;

/// Slots a distributed table's keys are hashed into (as Redis Cluster: enough to spread over
/// many groups, few enough to map slot by slot).
pub const SLOTS: u32 = 16384;

/// The version of the slot definition (affinity, canonical form, hash).
pub const SLOT_FORMAT: u32 = 1;

/// A column's type affinity, from its declared type (SQLite's datatype rules, §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    /// The affinity SQLite gives a column declared with `declared` (empty: BLOB).
    pub fn of_declared_type(declared: &str) -> Affinity {
        let upper = declared.to_ascii_uppercase();
        if upper.contains("INT") {
            Affinity::Integer
        } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") {
            Affinity::Text
        } else if upper.contains("BLOB") || upper.trim().is_empty() {
            Affinity::Blob
        } else if upper.contains("REAL") || upper.contains("FLOA") || upper.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }

    /// The scratch table's column of this affinity.
    fn column(self) -> &'static str {
        match self {
            Affinity::Integer => "i",
            Affinity::Text => "t",
            Affinity::Blob => "b",
            Affinity::Real => "r",
            Affinity::Numeric => "n",
        }
    }
}

/// Why a value cannot be a shard key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("a shard key cannot be NULL (a row with a NULL key belongs to no shard)")]
    Null,
    #[error("applying the column's affinity to a shard key: {0}")]
    Sqlite(String),
}

/// Computes slots: holds an in-memory SQLite database whose one-row table has a column of
/// each affinity, so SQLite itself converts each key as its column would store it.
pub struct Slotter {
    scratch: Connection,
}

impl Slotter {
    pub fn new() -> Result<Slotter, KeyError> {
        let sqlite = |e: rusqlite::Error| KeyError::Sqlite(e.to_string());
        let scratch = Connection::open_in_memory().map_err(sqlite)?;
        scratch
            .execute_batch(
                "CREATE TABLE key (id INTEGER PRIMARY KEY, i INTEGER, t TEXT, b BLOB, r REAL, n NUMERIC);
                 INSERT INTO key (id) VALUES (1);",
            )
            .map_err(sqlite)?;
        Ok(Slotter { scratch })
    }

    /// `value` as a column of `affinity` stores it.
    pub fn stored_as(&self, value: &SqlValue, affinity: Affinity) -> Result<SqlValue, KeyError> {
        if let Some(unchanged) = stored_unchanged(value, affinity) {
            return Ok(unchanged.clone());
        }
        self.stored_by_sqlite(value, affinity)
    }

    /// `value` as SQLite itself converts it for a column of `affinity`.
    fn stored_by_sqlite(&self, value: &SqlValue, affinity: Affinity) -> Result<SqlValue, KeyError> {
        let column = affinity.column();
        let sql = format!("UPDATE key SET {column} = ?1 WHERE id = 1 RETURNING {column}");
        let mut statement = self
            .scratch
            .prepare_cached(&sql)
            .map_err(|e| KeyError::Sqlite(e.to_string()))?;
        statement
            .query_row([value], |row| Ok(SqlValue::from(row.get_ref(0)?)))
            .map_err(|e| KeyError::Sqlite(e.to_string()))
    }

    /// The slot of `key` in a column of `affinity`.
    pub fn slot(&self, key: &SqlValue, affinity: Affinity) -> Result<u32, KeyError> {
        if let Some(unchanged) = stored_unchanged(key, affinity) {
            return slot_of_stored(unchanged);
        }
        slot_of_stored(&self.stored_by_sqlite(key, affinity)?)
    }
}

/// `value` itself when a column of `affinity` stores it unchanged — the common keys (an
/// integer in an INTEGER or NUMERIC column, text in a TEXT column, any blob) — so their slot
/// needs no trip through SQLite. `None` when SQLite might convert it (the rules of §3.4 of
/// SQLite's datatype page; a test checks this against SQLite for every pairing).
fn stored_unchanged(value: &SqlValue, affinity: Affinity) -> Option<&SqlValue> {
    let unchanged = match (value, affinity) {
        (SqlValue::Blob(_), _) => true,
        (SqlValue::Integer(_), Affinity::Integer | Affinity::Numeric | Affinity::Blob) => true,
        (SqlValue::Text(_), Affinity::Text | Affinity::Blob) => true,
        (SqlValue::Real(r), Affinity::Real | Affinity::Blob) => r.is_finite(),
        _ => false,
    };
    unchanged.then_some(value)
}

/// The slot of a key already stored by its column (read back from a table): its affinity is
/// applied, so only the canonical form and the hash remain.
pub fn slot_of_stored(stored: &SqlValue) -> Result<u32, KeyError> {
    Ok(crc32c::crc32c(&canonical_bytes(stored)?) % SLOTS)
}

/// The canonical bytes of a stored key: a tag, then the value. Values SQLite compares equal
/// give the same bytes (an integral REAL within the 64-bit range is its INTEGER; -0.0 is 0).
pub fn canonical_bytes(stored: &SqlValue) -> Result<Vec<u8>, KeyError> {
    let integer = |i: i64| {
        let mut bytes = vec![b'i'];
        bytes.extend_from_slice(&i.to_be_bytes());
        bytes
    };
    Ok(match stored {
        SqlValue::Null => return Err(KeyError::Null),
        SqlValue::Integer(i) => integer(*i),
        SqlValue::Real(r) => {
            // 2^63 is the first REAL past i64's range.
            let in_range = *r >= -9_223_372_036_854_775_808.0 && *r < 9_223_372_036_854_775_808.0;
            if r.fract() == 0.0 && in_range {
                integer(*r as i64)
            } else {
                let mut bytes = vec![b'r'];
                bytes.extend_from_slice(&r.to_bits().to_be_bytes());
                bytes
            }
        }
        SqlValue::Text(text) => {
            let mut bytes = vec![b't'];
            bytes.extend_from_slice(text.as_bytes());
            bytes
        }
        SqlValue::Blob(blob) => {
            let mut bytes = vec![b'b'];
            bytes.extend_from_slice(blob);
            bytes
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> SqlValue {
        SqlValue::Text(s.into())
    }

    #[test]
    fn values_sqlite_stores_alike_share_a_slot() {
        let slotter = Slotter::new().unwrap();
        let slot = |value: SqlValue, affinity| slotter.slot(&value, affinity).unwrap();
        use Affinity::*;
        // An INTEGER (or NUMERIC) column stores 1, 1.0 and '1' as the integer 1.
        for affinity in [Integer, Numeric] {
            let one = slot(SqlValue::Integer(1), affinity);
            assert_eq!(slot(SqlValue::Real(1.0), affinity), one);
            assert_eq!(slot(text("1"), affinity), one);
            assert_eq!(
                slot(text(" 1 "), affinity),
                one,
                "SQLite trims when converting"
            );
            assert_ne!(
                slot(text("1abc"), affinity),
                one,
                "not a number: kept as text"
            );
        }
        // A REAL column stores 1 as 1.0, which compares equal to 1 anywhere.
        assert_eq!(
            slot(SqlValue::Integer(1), Real),
            slot(SqlValue::Integer(1), Integer)
        );
        assert_eq!(
            slot(SqlValue::Real(-0.0), Real),
            slot(SqlValue::Integer(0), Integer)
        );
        // A TEXT column stores numbers as their text: 1 is '1', 1.0 is '1.0'.
        assert_eq!(slot(SqlValue::Integer(1), Text), slot(text("1"), Text));
        assert_ne!(slot(SqlValue::Real(1.0), Text), slot(text("1"), Text));
        // A BLOB (no affinity) column converts nothing: '1' is text, 1.0 still equals 1.
        assert_ne!(slot(text("1"), Blob), slot(SqlValue::Integer(1), Blob));
        assert_eq!(
            slot(SqlValue::Real(1.0), Blob),
            slot(SqlValue::Integer(1), Blob)
        );
        assert_eq!(
            slotter.stored_as(&text("12"), Blob).unwrap(),
            text("12"),
            "stored unchanged"
        );
    }

    #[test]
    fn keys_stored_unchanged_skip_sqlite_only_where_sqlite_would_not_convert_them() {
        let slotter = Slotter::new().unwrap();
        let values = [
            SqlValue::Integer(0),
            SqlValue::Integer(i64::MIN),
            SqlValue::Integer(i64::MAX),
            SqlValue::Real(1.0),
            SqlValue::Real(-0.0),
            SqlValue::Real(2.5),
            SqlValue::Real(1e300),
            text(""),
            text("1"),
            text(" 7 "),
            text("x"),
            SqlValue::Blob(vec![]),
            SqlValue::Blob(vec![0x31]),
        ];
        use Affinity::*;
        for value in &values {
            for affinity in [Integer, Text, Blob, Real, Numeric] {
                let by_sqlite = slotter.stored_by_sqlite(value, affinity).unwrap();
                if let Some(unchanged) = stored_unchanged(value, affinity) {
                    assert_eq!(unchanged, &by_sqlite, "{value:?} in a {affinity:?} column");
                }
                assert_eq!(
                    slotter.slot(value, affinity).unwrap(),
                    slot_of_stored(&by_sqlite).unwrap(),
                    "{value:?} in a {affinity:?} column"
                );
            }
        }
    }

    #[test]
    fn a_null_key_has_no_slot() {
        let slotter = Slotter::new().unwrap();
        for affinity in [Affinity::Integer, Affinity::Text, Affinity::Blob] {
            assert_eq!(slotter.slot(&SqlValue::Null, affinity), Err(KeyError::Null));
        }
    }

    #[test]
    fn slots_are_pinned_by_the_format() {
        // Part of the on-disk format: these never change within SLOT_FORMAT 1.
        let slotter = Slotter::new().unwrap();
        let pinned: Vec<u32> = [
            SqlValue::Integer(1),
            SqlValue::Integer(-42),
            SqlValue::Real(2.5),
            text("customer-7"),
            SqlValue::Blob(vec![0, 255]),
        ]
        .iter()
        .map(|key| slotter.slot(key, Affinity::Blob).unwrap())
        .collect();
        assert_eq!(pinned, PINNED);
    }

    // (Checked against an independent CRC-32C: crc32c(b"i" + 1 as i64 big-endian) % 16384 = 4428.)
    const PINNED: [u32; 5] = [4428, 15888, 12749, 2914, 6635];

    #[test]
    fn integer_keys_spread_evenly_over_the_slots() {
        let slotter = Slotter::new().unwrap();
        let mut counts = vec![0u32; SLOTS as usize];
        let keys = 200_000;
        for key in 0..keys {
            let slot = slotter
                .slot(&SqlValue::Integer(key), Affinity::Integer)
                .unwrap();
            counts[slot as usize] += 1;
        }
        // About 12 per slot: every slot used, none more than four times the mean.
        let mean = keys as f64 / f64::from(SLOTS);
        assert!(counts.iter().all(|&c| c > 0), "an empty slot");
        assert!(
            counts.iter().all(|&c| f64::from(c) < mean * 4.0),
            "a crowded slot"
        );
    }

    #[test]
    fn declared_types_map_to_sqlite_affinities() {
        use Affinity::*;
        for (declared, affinity) in [
            ("INTEGER", Integer),
            ("BIGINT", Integer),
            ("VARCHAR(20)", Text),
            ("CLOB", Text),
            ("", Blob),
            ("BLOB", Blob),
            ("DOUBLE PRECISION", Real),
            ("FLOAT", Real),
            ("DECIMAL(10,2)", Numeric),
            ("BOOLEAN", Numeric),
            ("CHARINT", Integer), // INT wins, as in SQLite
        ] {
            assert_eq!(Affinity::of_declared_type(declared), affinity, "{declared}");
        }
    }
}
