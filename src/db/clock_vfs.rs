//! A SQLite VFS whose clock is set by the caller: the writer connection reads "now" from the
//! log entry being applied, so `datetime('now')`, `CURRENT_TIMESTAMP` and friends give the same
//! answer on every replica.
//!
//! SQLite's date/time functions read the time through the VFS (`xCurrentTimeInt64`), once per
//! statement, wherever they appear: in the statement, in a column DEFAULT or in a trigger. So a
//! VFS that delegates everything to the default VFS except the clock makes them deterministic
//! without rewriting SQL text. Written by hand because no crate provides a delegating VFS with a
//! settable clock; the delegation is a straight pass-through of every method.

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_int, c_void};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rusqlite::ffi;

/// Milliseconds between the Julian day epoch (-4713-11-24 12:00 UTC) and the Unix epoch.
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;

/// Clock value meaning "no entry is being applied: use the real clock".
const REAL_CLOCK: i64 = i64::MIN;

/// The settable clock of one registered VFS.
#[derive(Debug)]
pub struct EntryClock {
    unix_ms: AtomicI64,
}

impl EntryClock {
    /// Makes "now" equal to `unix_ms` for statements run through this VFS until [`Self::clear`].
    pub fn set(&self, unix_ms: i64) {
        self.unix_ms.store(unix_ms, Ordering::SeqCst);
    }

    /// Returns to the real clock.
    pub fn clear(&self) {
        self.unix_ms.store(REAL_CLOCK, Ordering::SeqCst);
    }
}

/// A registered clock VFS: its name (for `open_with_flags_and_vfs`) and its clock.
#[derive(Clone, Debug)]
pub struct ClockVfs {
    pub name: String,
    pub clock: Arc<EntryClock>,
}

struct Registered {
    name: String,
    clock: Arc<EntryClock>,
}

fn registry() -> &'static Mutex<HashMap<String, Registered>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Registered>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Registers (once per name, for the life of the process) a clock VFS delegating to SQLite's
/// default VFS, and returns it. The same name always returns the same clock.
pub fn register(name: &str) -> Result<ClockVfs, String> {
    let mut registry = registry()
        .lock()
        .map_err(|_| "clock VFS registry poisoned".to_string())?;
    if let Some(existing) = registry.get(name) {
        return Ok(ClockVfs {
            name: existing.name.clone(),
            clock: existing.clock.clone(),
        });
    }
    let clock = Arc::new(EntryClock {
        unix_ms: AtomicI64::new(REAL_CLOCK),
    });
    let c_name =
        CString::new(name).map_err(|_| format!("VFS name {name:?} contains a NUL byte"))?;
    // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives for the process.
    let root = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if root.is_null() {
        return Err("SQLite has no default VFS".to_string());
    }
    // SAFETY: root is a valid, registered VFS; we only read its sizes.
    let (os_file_size, max_pathname) = unsafe { ((*root).szOsFile, (*root).mxPathname) };
    // The VFS struct, its name and its clock must outlive every connection using them: SQLite
    // keeps pointers to them. They are leaked once per distinct name (one per Raft group).
    let app_data = Box::into_raw(Box::new(AppData {
        root,
        clock: clock.clone(),
    }));
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: os_file_size,
        mxPathname: max_pathname,
        pNext: std::ptr::null_mut(),
        zName: c_name.into_raw(),
        pAppData: app_data.cast::<c_void>(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    });
    let vfs = Box::into_raw(vfs);
    // SAFETY: vfs points to a fully initialised, leaked sqlite3_vfs.
    let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    if rc != ffi::SQLITE_OK {
        return Err(format!(
            "sqlite3_vfs_register({name}) failed with code {rc}"
        ));
    }
    registry.insert(
        name.to_string(),
        Registered {
            name: name.to_string(),
            clock: clock.clone(),
        },
    );
    Ok(ClockVfs {
        name: name.to_string(),
        clock,
    })
}

struct AppData {
    root: *mut ffi::sqlite3_vfs,
    clock: Arc<EntryClock>,
}

/// # Safety
/// `vfs` must be a VFS created by [`register`].
unsafe fn app(vfs: *mut ffi::sqlite3_vfs) -> &'static AppData {
    // SAFETY: pAppData was set to a leaked AppData in `register` and is never freed.
    unsafe { &*((*vfs).pAppData as *const AppData) }
}

/// # Safety
/// `vfs` must be a VFS created by [`register`].
unsafe fn root(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: forwarded from caller.
    unsafe { app(vfs).root }
}

macro_rules! forward {
    ($vfs:expr, $method:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: SQLite calls us with our own VFS; the root VFS is valid for the process.
        let root = unsafe { root($vfs) };
        match unsafe { (*root).$method } {
            // SAFETY: same contract as the method we were called through.
            Some(method) => unsafe { method(root $(, $arg)*) },
            None => $missing,
        }
    }};
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    forward!(vfs, xOpen, ffi::SQLITE_ERROR, name, file, flags, out_flags)
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    forward!(vfs, xDelete, ffi::SQLITE_ERROR, name, sync_dir)
}

unsafe extern "C" fn x_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    forward!(vfs, xAccess, ffi::SQLITE_ERROR, name, flags, out)
}

unsafe extern "C" fn x_full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    forward!(vfs, xFullPathname, ffi::SQLITE_ERROR, name, n, out)
}

unsafe extern "C" fn x_dl_open(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    forward!(vfs, xDlOpen, std::ptr::null_mut(), name)
}

unsafe extern "C" fn x_dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, message: *mut c_char) {
    forward!(vfs, xDlError, (), n, message)
}

type DlSym = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

unsafe extern "C" fn x_dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> DlSym {
    forward!(vfs, xDlSym, None, handle, symbol)
}

unsafe extern "C" fn x_dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    forward!(vfs, xDlClose, (), handle)
}

unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    forward!(vfs, xRandomness, 0, n, out)
}

unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, microseconds: c_int) -> c_int {
    forward!(vfs, xSleep, 0, microseconds)
}

unsafe extern "C" fn x_get_last_error(
    vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    forward!(vfs, xGetLastError, 0, n, out)
}

unsafe extern "C" fn x_current_time_int64(
    vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls us with our own VFS.
    let unix_ms = unsafe { app(vfs) }.clock.unix_ms.load(Ordering::SeqCst);
    if unix_ms == REAL_CLOCK {
        return forward!(vfs, xCurrentTimeInt64, ffi::SQLITE_ERROR, out);
    }
    // SAFETY: SQLite passes a valid output pointer.
    unsafe { *out = unix_ms + UNIX_EPOCH_JULIAN_MS };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let mut julian_ms: ffi::sqlite3_int64 = 0;
    // SAFETY: same VFS, valid local output pointer.
    let rc = unsafe { x_current_time_int64(vfs, &mut julian_ms) };
    // SAFETY: SQLite passes a valid output pointer.
    unsafe { *out = julian_ms as f64 / 86_400_000.0 };
    rc
}

// SAFETY: AppData is immutable after registration except through atomics.
unsafe impl Send for AppData {}
unsafe impl Sync for AppData {}
