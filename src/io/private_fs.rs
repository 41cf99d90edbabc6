//! The default store: `lightning-persister`'s `FilesystemStore` with private files.

use std::path::PathBuf;

use lightning::io;
use lightning::util::persist::KVStoreSync;
use lightning_persister::fs_store::FilesystemStore;

/// `lightning-persister`'s `FilesystemStore`, with every record file made readable by its owner
/// only (mode 0600 on Unix) once written: records name the app's contacts in their labels.
/// The data dir itself is already the owner's alone; this makes the files say so too.
pub(crate) struct PrivateFilesystemStore {
    inner: FilesystemStore,
    data_dir: PathBuf,
}

impl PrivateFilesystemStore {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            inner: FilesystemStore::new(data_dir.clone()),
            data_dir,
        }
    }

    /// Where `FilesystemStore` puts a record: `data_dir/primary[/secondary]/key`.
    fn record_path(&self, primary: &str, secondary: &str, key: &str) -> PathBuf {
        let mut path = self.data_dir.join(primary);
        if !secondary.is_empty() {
            path.push(secondary);
        }
        path.join(key)
    }
}

impl KVStoreSync for PrivateFilesystemStore {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> Result<Vec<u8>, io::Error> {
        self.inner.read(primary, secondary, key)
    }

    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> Result<(), io::Error> {
        self.inner.write(primary, secondary, key, buf)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = self.record_path(primary, secondary, key);
            if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            {
                // Written and durable; inside the private data dir no one else reaches it anyway.
                log::warn!("could not make {} private: {e}", path.display());
            }
        }
        Ok(())
    }

    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        lazy: bool,
    ) -> Result<(), io::Error> {
        self.inner.remove(primary, secondary, key, lazy)
    }

    fn list(&self, primary: &str, secondary: &str) -> Result<Vec<String>, io::Error> {
        self.inner.list(primary, secondary)
    }
}
