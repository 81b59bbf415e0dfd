//! Output files: checked before any work so that a bad path fails at once, written through a
//! temporary file in the same folder, and renamed into place together when the command ends
//! (`commit`), so a reader never sees half a file, nor the new outputs of a command beside the old
//! ones of another. A failed command removes its temporaries (`discard`), and so does SIGINT or
//! SIGTERM (`remove_on_signal`). A command that works case by case also lands a partial result
//! after each case (`Output::write_partial`, hyperfine's way): the same staging, renamed at once,
//! so a crash or a signal leaves the complete result of the cases done, never half a file. `-` means standard output; a FIFO or a device is written in
//! place, never replaced.
//!
//! Depends on `tempfile`, `signal-hook` and the file system only.

use crate::failure::Failure;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The temporaries written by this command and the paths each is renamed to at the end.
static STAGED: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

fn staged() -> std::sync::MutexGuard<'static, Vec<(PathBuf, PathBuf)>> {
    STAGED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Renames every staged temporary into place, under one lock so a signal handler sees all of
/// them or none. Returns the first failure.
pub fn commit() -> Result<(), Failure> {
    let mut staged = staged();
    let mut result = Ok(());
    for (temporary, path) in staged.drain(..) {
        if let Err(error) = std::fs::rename(&temporary, &path) {
            let _ = std::fs::remove_file(&temporary);
            if result.is_ok() {
                result = Err(Failure::bad_input(format!(
                    "{}: cannot write: {error}",
                    path.display()
                )));
            }
        }
    }
    result
}

/// Renames the staged temporary of `path` into place now, under the staging lock.
fn land(path: &Path) -> Result<(), Failure> {
    let mut staged = staged();
    let Some(index) = staged
        .iter()
        .position(|(_, staged_path)| staged_path == path)
    else {
        return Ok(());
    };
    let (temporary, path) = staged.remove(index);
    std::fs::rename(&temporary, &path).map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        Failure::bad_input(format!("{}: cannot write: {error}", path.display()))
    })
}

/// Removes every staged temporary: nothing of a failed command lands.
pub fn discard() {
    for (temporary, _) in staged().drain(..) {
        let _ = std::fs::remove_file(&temporary);
    }
}

/// On SIGINT or SIGTERM: removes the staged temporaries, then exits with 128 plus the signal's
/// number, as a shell reports a process the signal ended.
pub fn remove_on_signal() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            discard();
            // The lock stays held: no commit may start between the removal and the exit.
            let _held = staged();
            std::process::exit(128 + signal);
        }
    });
}

pub enum Output {
    Stdout,
    /// A regular file (or one to be made), replaced whole through a rename. A symbolic link is
    /// followed: the file it points to is replaced, the link stays.
    File {
        path: PathBuf,
    },
    /// Something that is not a regular file, such as a FIFO or `/dev/null`: written to in place,
    /// never replaced.
    Device {
        path: PathBuf,
    },
}

/// The most bytes of one name in a path (the usual file system limit).
const NAME_BYTES_MAX: usize = 255;
/// The most bytes of a whole path.
const PATH_BYTES_MAX: usize = 4096;

impl Output {
    /// Checks now that `target` can be written: a non-empty path of sensible length, not a
    /// directory, whose folder exists and takes a temporary file, or an existing writable device.
    pub fn create(target: &str, flag: &str) -> Result<Output, Failure> {
        if target == "-" {
            return Ok(Output::Stdout);
        }
        let shown = sim::time::echo(target);
        let fail = |message: String| Failure::bad_input(format!("{flag} {shown}: {message}"));
        check_path_text(target).map_err(fail)?;
        let mut path = PathBuf::from(target);
        if let Ok(metadata) = std::fs::metadata(&path) {
            if metadata.is_dir() {
                return Err(fail("is a directory".to_string()));
            }
            if std::fs::symlink_metadata(&path).is_ok_and(|link| link.file_type().is_symlink()) {
                path = std::fs::canonicalize(&path)
                    .map_err(|error| fail(format!("cannot follow the link: {error}")))?;
            }
            if !metadata.is_file() {
                // A FIFO opens for writing only once a reader has it open: it is opened at the
                // write, as the user asked, not now.
                use std::os::unix::fs::FileTypeExt;
                if !metadata.file_type().is_fifo() {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|error| fail(format!("cannot write: {error}")))?;
                }
                return Ok(Output::Device { path });
            }
            if metadata.permissions().readonly() {
                return Err(fail("the file is read-only".to_string()));
            }
        }
        let dir = parent_dir(&path);
        // The probe is made and removed under the staging lock, so a signal never exits between
        // the two and leaves it behind.
        let held = staged();
        let probe = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|error| fail(format!("cannot write in {}: {error}", dir.display())))?;
        drop(probe);
        drop(held);
        Ok(Output::File { path })
    }

    /// Replaces the whole content of the output.
    pub fn write(&self, bytes: &[u8]) -> Result<(), Failure> {
        match self {
            Output::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(bytes)
                    .and_then(|_| stdout.flush())
                    .map_err(|error| {
                        Failure::bad_input(format!("cannot write to standard output: {error}"))
                    })
            }
            Output::File { path } => write_atomically(path, bytes),
            Output::Device { path } => std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|mut file| file.write_all(bytes))
                .map_err(|error| {
                    Failure::bad_input(format!("{}: cannot write: {error}", path.display()))
                }),
        }
    }

    /// Replaces a regular file's content now, through the same staging as `write`, renamed into
    /// place at once: the partial result of a command that is still working. Standard output and
    /// devices receive only the final `write`, once.
    pub fn write_partial(&self, bytes: &[u8]) -> Result<(), Failure> {
        match self {
            Output::File { path } => {
                stage(path, bytes, false)?;
                land(path)
            }
            Output::Stdout | Output::Device { .. } => Ok(()),
        }
    }

    pub fn write_json<T: serde::Serialize>(&self, value: &T) -> Result<(), Failure> {
        self.write(&json_bytes(value)?)
    }
}

/// How often a command lands a partial result at most (wall clock: on a fast sweep the cases take
/// milliseconds, and rendering the result after each would cost more than running them).
const LAND_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// When the next partial result is due: after a case, once `LAND_PERIOD` has passed since the
/// last one landed (the first, with no case done, lands before any work).
pub struct Pace {
    landed: std::time::Instant,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace::new()
    }
}

impl Pace {
    pub fn new() -> Pace {
        Pace {
            landed: std::time::Instant::now(),
        }
    }

    /// Whether to land now; if so, the period starts again.
    pub fn due(&mut self) -> bool {
        let due = self.landed.elapsed() >= LAND_PERIOD;
        if due {
            self.landed = std::time::Instant::now();
        }
        due
    }
}

/// A value as pretty JSON ending in a newline, as every JSON output is written.
pub fn json_bytes<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Failure> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|error| Failure::bad_input(format!("cannot encode JSON: {error}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// An output path the file system can hold: not empty, no name over `NAME_BYTES_MAX` bytes, the
/// whole at most `PATH_BYTES_MAX`.
fn check_path_text(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("an empty path: name a file, or `-` for standard output".to_string());
    }
    if target.len() > PATH_BYTES_MAX {
        return Err(format!("the path is longer than {PATH_BYTES_MAX} bytes"));
    }
    if let Some(name) = target.split('/').find(|name| name.len() > NAME_BYTES_MAX) {
        return Err(format!(
            "a name of {} bytes: at most {NAME_BYTES_MAX}",
            name.len()
        ));
    }
    Ok(())
}

/// Checks now that `target` names a folder that exists or can be made (its parent exists).
pub fn check_dir(target: &str, flag: &str) -> Result<(), Failure> {
    let shown = sim::time::echo(target);
    let fail = |message: String| Failure::bad_input(format!("{flag} {shown}: {message}"));
    check_path_text(target).map_err(fail)?;
    let path = Path::new(target);
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(fail("exists and is not a folder".to_string())),
        Err(_) if parent_dir(path).is_dir() => Ok(()),
        Err(_) => Err(fail(format!(
            "neither it nor its parent {} is a folder",
            parent_dir(path).display()
        ))),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to a temporary file beside `path`, to be renamed over `path` by `commit` (a
/// later write to the same path replaces the earlier one).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    stage(path, bytes, true)
}

/// `write_atomically`, synced to the disk only when `durable`: a partial result, replaced a case
/// later, is renamed whole (no reader or crash of the process sees half of it) but not synced,
/// which would cost more than the cases on a fast sweep.
fn stage(path: &Path, bytes: &[u8], durable: bool) -> Result<(), Failure> {
    let dir = parent_dir(path);
    let fail = |error: std::io::Error| {
        Failure::bad_input(format!("{}: cannot write: {error}", path.display()))
    };
    // The temporary is made, written and staged under the staging lock, so a signal handler
    // waits until it can remove it.
    let mut staged = staged();
    let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    // A temporary file is private to its owner; the output is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(fail)?;
    }
    if durable {
        file.as_file().sync_all().map_err(fail)?;
    }
    let temporary = file
        .into_temp_path()
        .keep()
        .map_err(|error| fail(error.error))?;
    if let Some(index) = staged
        .iter()
        .position(|(_, staged_path)| staged_path == path)
    {
        let (earlier, _) = staged.remove(index);
        let _ = std::fs::remove_file(earlier);
    }
    staged.push((temporary, path.to_path_buf()));
    Ok(())
}

/// The version of the format of every JSON result the commands write (`schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// Prints the human summary where it does not mix with JSON on standard output.
pub fn say(json_on_stdout: bool, text: &str) {
    if json_on_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_folder_fails_before_work() {
        assert!(Output::create("/nonexistent-folder/x.json", "--export-json").is_err());
    }

    #[test]
    fn writes_replace_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        let output = Output::create(path.to_str().unwrap(), "--export-json").unwrap();
        output.write(b"first, longer content").unwrap();
        output.write(b"second").unwrap();
        commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_partial_write_lands_at_once_and_the_final_one_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial.json");
        let output = Output::create(path.to_str().unwrap(), "--export-json").unwrap();
        output.write_partial(b"one case").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one case");
        output.write(b"all cases").unwrap();
        commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"all cases");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn devices_are_written_in_place_and_links_followed() {
        let output = Output::create("/dev/null", "--export-json").unwrap();
        assert!(matches!(output, Output::Device { .. }));
        output.write(b"nothing").unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.json");
        std::fs::write(&target, b"old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let output = Output::create(link.to_str().unwrap(), "--export-json").unwrap();
        output.write(b"new").unwrap();
        commit().unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        for bad in ["", &"n".repeat(300)] {
            assert!(Output::create(bad, "--export-json").is_err());
        }
    }
}
