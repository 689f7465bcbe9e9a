//! The audit log file (`serve --audit-log FILE`): every event of the tracing target `audit` —
//! logins, lockouts, permission denials, DDL, user and membership changes, backups and
//! restores, with who, from where and when — as one JSON line, in a file of its own that is
//! rotated by size (FILE, FILE.1 … FILE.N, oldest dropped). Events never carry passwords,
//! tokens or keys. Hand-written because tracing-appender rotates by time only, and an audit
//! trail needs a bound on disk use.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the audit log goes and how much of it is kept.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub path: PathBuf,
    /// A file is rotated once it would grow past this.
    pub file_bytes_max: u64,
    /// Rotated files kept besides the current one.
    pub rotated_files: u32,
}

/// The current audit file and its rotation (wrap it in a `Mutex` to hand it to tracing: each
/// event is then written whole, under the lock).
pub struct RotatingFile {
    settings: AuditSettings,
    file: File,
    written: u64,
}

impl RotatingFile {
    /// Opens (or creates, readable by the owner only) the audit file for appending.
    pub fn open(settings: AuditSettings) -> Result<RotatingFile, String> {
        if settings.file_bytes_max < 4096 {
            return Err(format!(
                "audit log files of {} bytes are too small (at least 4096)",
                settings.file_bytes_max
            ));
        }
        let file = open_append(&settings.path)?;
        let written = file
            .metadata()
            .map_err(|e| format!("{}: {e}", settings.path.display()))?
            .len();
        Ok(RotatingFile {
            settings,
            file,
            written,
        })
    }

    fn rotated(&self, generation: u32) -> PathBuf {
        let mut name = self.settings.path.as_os_str().to_owned();
        name.push(format!(".{generation}"));
        PathBuf::from(name)
    }

    /// FILE.N-1 → FILE.N, …, FILE → FILE.1, and a new FILE.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let keep = self.settings.rotated_files;
        if keep == 0 {
            std::fs::remove_file(&self.settings.path)?;
        } else {
            for generation in (1..keep).rev() {
                let from = self.rotated(generation);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(generation + 1))?;
                }
            }
            std::fs::rename(&self.settings.path, self.rotated(1))?;
        }
        self.file = open_append(&self.settings.path).map_err(io::Error::other)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.settings.file_bytes_max {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("audit log {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_the_oldest_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = RotatingFile::open(AuditSettings {
            path: path.clone(),
            file_bytes_max: 4096,
            rotated_files: 2,
        })
        .unwrap();
        let line = format!("{}\n", "x".repeat(1023));
        // 4.5 files' worth: four full ones, the current half full.
        for _ in 0..18 {
            file.write_all(line.as_bytes()).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert_eq!(size(&path), 2048);
        assert_eq!(size(&dir.path().join("audit.log.1")), 4096);
        assert_eq!(size(&dir.path().join("audit.log.2")), 4096);
        assert!(
            !dir.path().join("audit.log.3").exists(),
            "only two rotated files kept"
        );
        // Reopening appends where it left off.
        let before = size(&path);
        let mut again = RotatingFile::open(AuditSettings {
            path: path.clone(),
            file_bytes_max: 4096,
            rotated_files: 2,
        })
        .unwrap();
        again.write_all(b"y\n").unwrap();
        assert_eq!(size(&path), before + 2);
        assert!(
            RotatingFile::open(AuditSettings {
                path,
                file_bytes_max: 10,
                rotated_files: 1
            })
            .is_err()
        );
    }
}
