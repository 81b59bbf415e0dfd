//! Output files: created before any work so that a bad path fails at once, written through a
//! temporary file in the same folder and renamed into place, so a reader never sees half a file.
//! `-` means standard output.
//!
//! Depends on `tempfile` and the file system only.

use crate::failure::Failure;
use std::io::Write;
use std::path::{Path, PathBuf};

pub enum Output {
    Stdout,
    File { path: PathBuf },
}

impl Output {
    /// Checks now that `target` can be written: its folder exists and takes a temporary file.
    pub fn create(target: &str, flag: &str) -> Result<Output, Failure> {
        if target == "-" {
            return Ok(Output::Stdout);
        }
        let path = PathBuf::from(target);
        let dir = parent_dir(&path);
        if path.is_dir() {
            return Err(Failure::bad_input(format!(
                "{flag} {target}: is a directory"
            )));
        }
        tempfile::NamedTempFile::new_in(&dir).map_err(|error| {
            Failure::bad_input(format!(
                "{flag} {target}: cannot write in {}: {error}",
                dir.display()
            ))
        })?;
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
        }
    }

    pub fn write_json<T: serde::Serialize>(&self, value: &T) -> Result<(), Failure> {
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|error| Failure::bad_input(format!("cannot encode JSON: {error}")))?;
        bytes.push(b'\n');
        self.write(&bytes)
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = parent_dir(path);
    let fail = |error: std::io::Error| {
        Failure::bad_input(format!("{}: cannot write: {error}", path.display()))
    };
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
    file.as_file().sync_all().map_err(fail)?;
    file.persist(path).map_err(|error| fail(error.error))?;
    Ok(())
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
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
