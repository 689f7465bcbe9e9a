//! Deterministic `random()` and `randomblob(N)` for the writer connection: both draw from a
//! generator seeded by the log entry being applied, so every replica computes the same values.
//! ("Now" is made deterministic by the clock VFS in `clock_vfs`.)

use std::sync::{Arc, Mutex};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use sha2::{Digest, Sha256};

/// Upper bound on `randomblob(N)`, matching SQLite's default SQLITE_MAX_LENGTH.
const RANDOMBLOB_BYTES_MAX: i64 = 1_000_000_000;

/// The per-entry random source shared by the replacement functions.
#[derive(Clone)]
pub struct EntryRandom {
    generator: Arc<Mutex<ChaCha12Rng>>,
}

impl EntryRandom {
    /// Replaces `random()` and `randomblob(N)` on `connection` with functions drawing from the
    /// returned source. They override SQLite's built-ins everywhere: statements, column
    /// DEFAULTs and triggers.
    pub fn install(connection: &Connection) -> rusqlite::Result<EntryRandom> {
        let random = EntryRandom {
            generator: Arc::new(Mutex::new(ChaCha12Rng::seed_from_u64(0))),
        };
        // Not SQLITE_DETERMINISTIC (each call differs), but innocuous: usable in schema objects.
        let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS;
        let source = random.clone();
        connection.create_scalar_function("random", 0, flags, move |_context: &Context<'_>| {
            Ok(source.with_generator(|g| g.next_u64() as i64))
        })?;
        let source = random.clone();
        connection.create_scalar_function("randomblob", 1, flags, move |context: &Context<'_>| {
            let requested: i64 = context.get::<Option<i64>>(0)?.unwrap_or(1);
            if requested > RANDOMBLOB_BYTES_MAX {
                return Err(rusqlite::Error::UserFunctionError(
                    format!("randomblob({requested}) exceeds the limit of {RANDOMBLOB_BYTES_MAX} bytes").into(),
                ));
            }
            // SQLite returns a 1-byte blob for N < 1.
            let length = requested.max(1) as usize;
            let mut bytes = vec![0u8; length];
            source.with_generator(|g| g.fill_bytes(&mut bytes));
            Ok(bytes)
        })?;
        Ok(random)
    }

    /// Reseeds the generator for a transaction batch that carries its own seed.
    pub fn reseed_pinned(&self, seed: u64) {
        let mut hasher = Sha256::new();
        hasher.update(b"shoal pinned random() seed v1");
        hasher.update(seed.to_le_bytes());
        let seed: [u8; 32] = hasher.finalize().into();
        self.with_generator(|g| *g = ChaCha12Rng::from_seed(seed));
    }

    /// Reseeds the generator for the entry at `log_index`: the committed entry at an index is
    /// the same on every replica, so the sequence of random values is too.
    pub fn reseed(&self, log_index: u64) {
        let mut hasher = Sha256::new();
        hasher.update(b"shoal random() seed v1");
        hasher.update(log_index.to_le_bytes());
        let seed: [u8; 32] = hasher.finalize().into();
        self.with_generator(|g| *g = ChaCha12Rng::from_seed(seed));
    }

    fn with_generator<T>(&self, f: impl FnOnce(&mut ChaCha12Rng) -> T) -> T {
        let mut generator = match self.generator.lock() {
            Ok(generator) => generator,
            // A panic while holding the lock cannot leave a generator half-updated in a way
            // that matters: the next reseed replaces it entirely.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(connection: &Connection) -> (i64, Vec<u8>) {
        connection
            .query_row("SELECT random(), randomblob(8)", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap()
    }

    #[test]
    fn same_entry_gives_same_values_on_two_connections() {
        let a = Connection::open_in_memory().unwrap();
        let b = Connection::open_in_memory().unwrap();
        let (ra, rb) = (
            EntryRandom::install(&a).unwrap(),
            EntryRandom::install(&b).unwrap(),
        );
        ra.reseed(42);
        rb.reseed(42);
        assert_eq!(draw(&a), draw(&b));
        ra.reseed(43);
        rb.reseed(42);
        assert_ne!(draw(&a), draw(&b));
    }

    #[test]
    fn randomblob_keeps_sqlite_length_rules() {
        let c = Connection::open_in_memory().unwrap();
        EntryRandom::install(&c).unwrap().reseed(1);
        let len: i64 = c
            .query_row("SELECT length(randomblob(0))", [], |r| r.get(0))
            .unwrap();
        assert_eq!(len, 1);
        let len: i64 = c
            .query_row("SELECT length(randomblob(16))", [], |r| r.get(0))
            .unwrap();
        assert_eq!(len, 16);
    }

    #[test]
    fn overrides_apply_in_column_defaults() {
        let a = Connection::open_in_memory().unwrap();
        let b = Connection::open_in_memory().unwrap();
        for c in [&a, &b] {
            EntryRandom::install(c).unwrap().reseed(7);
            c.execute_batch(
                "CREATE TABLE t(x INTEGER DEFAULT (random())); INSERT INTO t DEFAULT VALUES;",
            )
            .unwrap();
        }
        let x = |c: &Connection| {
            c.query_row("SELECT x FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(x(&a), x(&b));
    }
}
