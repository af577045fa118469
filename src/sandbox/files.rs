//! Files a step is granted: read-only directories the server exposes and a
//! fresh, size-capped `/scratch` per attempt, each a preopen built from a
//! `cap_std::fs::Dir` handle. Path resolution under a preopen is
//! wasmtime-wasi's (cap-std's primitives): `..`, absolute paths and
//! symlinks cannot leave it; read-only preopens refuse every mutation.
//!
//! `wasi:filesystem/types` is implemented here by delegating to
//! wasmtime-wasi, so that each open is audited under its grant and each
//! write to scratch is counted against its cap. Scratch usage is the largest
//! size each file reached (a file rewritten in place counts once; a file
//! deleted still counts). Crossing the cap fails the write and ends the
//! attempt with `scratch_full`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, Dir, FsPerms, OpenMode, WasiFilesystemCtx, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{FsError, FsResult};
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream, OutputStream, StreamError};

use super::outcome::{Failure, FileUse};
use super::state::Tripwire;
use crate::grants::SCRATCH;

/// Most opens one attempt's audit lists; later ones are counted only.
pub const AUDITED_OPENS: usize = 1000;

/// The file grants of one attempt, and what it did with them.
#[derive(Default)]
pub(crate) struct Files {
    /// Preopens: guest name (without `/`), directory handle, read-only.
    preopens: Vec<(String, cap_std::fs::Dir, bool)>,
    /// Removed when the attempt's state is dropped.
    _scratch_dir: Option<tempfile::TempDir>,
    scratch: Option<Arc<ScratchMeter>>,
    /// Descriptor (table index) to its grant and guest path.
    opened: HashMap<u32, (String, String)>,
    pub audit: Vec<FileUse>,
    pub opens_not_listed: u64,
}

impl Files {
    /// Files of an attempt: `read` are the granted read-only directories;
    /// `scratch` a size cap for a fresh scratch directory.
    pub fn new(
        read: &[(String, Arc<cap_std::fs::Dir>)],
        scratch: Option<u64>,
        tripwire: &Tripwire,
    ) -> std::io::Result<Self> {
        let mut files = Files::default();
        for (name, dir) in read {
            files.preopens.push((name.clone(), dir.try_clone()?, true));
        }
        if let Some(limit) = scratch {
            let dir = tempfile::Builder::new().prefix("sandstep-scratch-").tempdir()?;
            let handle = cap_std::fs::Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority())?;
            files.preopens.push((SCRATCH.to_string(), handle, false));
            files._scratch_dir = Some(dir);
            files.scratch = Some(Arc::new(ScratchMeter {
                limit,
                sizes: Mutex::default(),
                tripwire: tripwire.clone(),
            }));
        }
        Ok(files)
    }

    pub fn is_empty(&self) -> bool {
        self.preopens.is_empty()
    }
}

/// Scratch usage: the largest size each file (by inode) reached.
struct ScratchMeter {
    limit: u64,
    sizes: Mutex<HashMap<u64, u64>>,
    tripwire: Tripwire,
}

impl ScratchMeter {
    /// Accounts a file growing to `end` bytes; `false` (and the attempt
    /// tripped) when that crosses the cap.
    fn grow(&self, file: &std::fs::File, end: Option<u64>, len: u64) -> bool {
        let Ok(meta) = file.metadata() else { return true };
        let mut sizes = self.sizes.lock().expect("scratch lock");
        let known = *sizes.get(&meta.ino()).unwrap_or(&meta.len());
        let end = end.unwrap_or(known) + len;
        let used: u64 = sizes.values().sum::<u64>() - sizes.get(&meta.ino()).copied().unwrap_or(0);
        let size = known.max(end).max(meta.len());
        if used + size > self.limit {
            self.tripwire.trip(Failure::ScratchFull { limit: self.limit });
            return false;
        }
        sizes.insert(meta.ino(), size);
        true
    }
}

/// What `wasi:filesystem` calls see: wasmtime-wasi's view plus the grants.
pub(crate) struct FilesView<'a> {
    pub ctx: &'a mut WasiFilesystemCtx,
    pub table: &'a mut ResourceTable,
    pub files: &'a mut Files,
}

pub(crate) struct HasFiles;

impl wasmtime::component::HasData for HasFiles {
    type Data<'a> = FilesView<'a>;
}

type Fd = Resource<types::Descriptor>;

impl FilesView<'_> {
    fn inner(&mut self) -> WasiFilesystemCtxView<'_> {
        WasiFilesystemCtxView {
            ctx: self.ctx,
            table: self.table,
        }
    }

    fn scratch_file(&mut self, fd: &Fd) -> Option<(Arc<ScratchMeter>, Arc<std::fs::File>)> {
        let meter = self.files.scratch.clone()?;
        let (grant, _) = self.files.opened.get(&fd.rep())?;
        if grant != SCRATCH {
            return None;
        }
        match self.table.get(fd).ok()? {
            Descriptor::File(f) => Some((meter, f.file.clone())),
            Descriptor::Dir(_) => None,
        }
    }
}

fn scratch_full() -> FsError {
    types::ErrorCode::InsufficientSpace.into()
}

impl preopens::Host for FilesView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Fd, String)>> {
        let mut dirs = Vec::new();
        for (name, dir, read_only) in &self.files.preopens {
            let (perms, mode) = if *read_only {
                (FsPerms::ReadOnly, OpenMode::READ)
            } else {
                (FsPerms::ReadWrite, OpenMode::READ | OpenMode::WRITE)
            };
            let handle = dir.try_clone()?.into_std_file();
            let fd = self.table.push(Descriptor::Dir(Dir::new(handle, perms, mode, false)))?;
            self.files.opened.insert(fd.rep(), (name.clone(), format!("/{name}")));
            dirs.push((fd, format!("/{name}")));
        }
        Ok(dirs)
    }
}

impl types::Host for FilesView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<types::ErrorCode> {
        types::Host::convert_error_code(&mut self.inner(), err)
    }

    fn filesystem_error_code(&mut self, err: Resource<wasmtime::Error>) -> wasmtime::Result<Option<types::ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner(), err)
    }
}

use types::HostDescriptor as D;

impl types::HostDescriptor for FilesView<'_> {
    async fn advise(&mut self, fd: Fd, offset: u64, len: u64, advice: types::Advice) -> FsResult<()> {
        D::advise(&mut self.inner(), fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Fd) -> FsResult<()> {
        D::sync_data(&mut self.inner(), fd).await
    }

    async fn get_flags(&mut self, fd: Fd) -> FsResult<types::DescriptorFlags> {
        D::get_flags(&mut self.inner(), fd).await
    }

    async fn get_type(&mut self, fd: Fd) -> FsResult<types::DescriptorType> {
        D::get_type(&mut self.inner(), fd).await
    }

    async fn set_size(&mut self, fd: Fd, size: u64) -> FsResult<()> {
        if let Some((meter, file)) = self.scratch_file(&fd) {
            if !meter.grow(&file, Some(size), 0) {
                return Err(scratch_full());
            }
        }
        D::set_size(&mut self.inner(), fd, size).await
    }

    async fn set_times(&mut self, fd: Fd, atim: types::NewTimestamp, mtim: types::NewTimestamp) -> FsResult<()> {
        D::set_times(&mut self.inner(), fd, atim, mtim).await
    }

    async fn read(&mut self, fd: Fd, len: u64, offset: u64) -> FsResult<(Vec<u8>, bool)> {
        D::read(&mut self.inner(), fd, len, offset).await
    }

    async fn write(&mut self, fd: Fd, buf: Vec<u8>, offset: u64) -> FsResult<u64> {
        if let Some((meter, file)) = self.scratch_file(&fd) {
            if !meter.grow(&file, Some(offset), buf.len() as u64) {
                return Err(scratch_full());
            }
        }
        D::write(&mut self.inner(), fd, buf, offset).await
    }

    async fn read_directory(&mut self, fd: Fd) -> FsResult<Resource<types::DirectoryEntryStream>> {
        D::read_directory(&mut self.inner(), fd).await
    }

    async fn sync(&mut self, fd: Fd) -> FsResult<()> {
        D::sync(&mut self.inner(), fd).await
    }

    async fn create_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        D::create_directory_at(&mut self.inner(), fd, path).await
    }

    async fn stat(&mut self, fd: Fd) -> FsResult<types::DescriptorStat> {
        D::stat(&mut self.inner(), fd).await
    }

    async fn stat_at(&mut self, fd: Fd, flags: types::PathFlags, path: String) -> FsResult<types::DescriptorStat> {
        D::stat_at(&mut self.inner(), fd, flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Fd,
        flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        D::set_times_at(&mut self.inner(), fd, flags, path, atim, mtim).await
    }

    async fn link_at(
        &mut self,
        fd: Fd,
        old_flags: types::PathFlags,
        old_path: String,
        new_fd: Fd,
        new_path: String,
    ) -> FsResult<()> {
        D::link_at(&mut self.inner(), fd, old_flags, old_path, new_fd, new_path).await
    }

    async fn open_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Fd> {
        let parent = self.files.opened.get(&fd.rep()).cloned();
        let write = flags.contains(types::DescriptorFlags::WRITE)
            || oflags.intersects(types::OpenFlags::CREATE | types::OpenFlags::TRUNCATE);
        let opened = D::open_at(&mut self.inner(), fd, path_flags, path.clone(), oflags, flags).await?;
        if let Some((grant, base)) = parent {
            let full = format!("{base}/{}", path.trim_start_matches("./"));
            if self.files.audit.len() < AUDITED_OPENS {
                self.files.audit.push(FileUse {
                    grant: grant.clone(),
                    path: full.clone(),
                    write,
                });
            } else {
                self.files.opens_not_listed += 1;
            }
            self.files.opened.insert(opened.rep(), (grant, full));
        }
        Ok(opened)
    }

    fn drop(&mut self, fd: Fd) -> wasmtime::Result<()> {
        self.files.opened.remove(&fd.rep());
        D::drop(&mut self.inner(), fd)
    }

    async fn readlink_at(&mut self, fd: Fd, path: String) -> FsResult<String> {
        D::readlink_at(&mut self.inner(), fd, path).await
    }

    async fn remove_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        D::remove_directory_at(&mut self.inner(), fd, path).await
    }

    async fn rename_at(&mut self, fd: Fd, old_path: String, new_fd: Fd, new_path: String) -> FsResult<()> {
        D::rename_at(&mut self.inner(), fd, old_path, new_fd, new_path).await
    }

    async fn symlink_at(&mut self, fd: Fd, src: String, dest: String) -> FsResult<()> {
        D::symlink_at(&mut self.inner(), fd, src, dest).await
    }

    async fn unlink_file_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        D::unlink_file_at(&mut self.inner(), fd, path).await
    }

    fn read_via_stream(&mut self, fd: Fd, offset: u64) -> FsResult<Resource<DynInputStream>> {
        D::read_via_stream(&mut self.inner(), fd, offset)
    }

    fn write_via_stream(&mut self, fd: Fd, offset: u64) -> FsResult<Resource<DynOutputStream>> {
        let scratch = self.scratch_file(&fd);
        let stream = D::write_via_stream(&mut self.inner(), fd, offset)?;
        self.meter_stream(stream, scratch, Some(offset))
    }

    fn append_via_stream(&mut self, fd: Fd) -> FsResult<Resource<DynOutputStream>> {
        let scratch = self.scratch_file(&fd);
        let stream = D::append_via_stream(&mut self.inner(), fd)?;
        self.meter_stream(stream, scratch, None)
    }

    async fn is_same_object(&mut self, a: Fd, b: Fd) -> wasmtime::Result<bool> {
        D::is_same_object(&mut self.inner(), a, b).await
    }

    async fn metadata_hash(&mut self, fd: Fd) -> FsResult<types::MetadataHashValue> {
        D::metadata_hash(&mut self.inner(), fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Fd,
        flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        D::metadata_hash_at(&mut self.inner(), fd, flags, path).await
    }
}

impl FilesView<'_> {
    /// Puts a counting stream in place of a scratch file's output stream.
    fn meter_stream(
        &mut self,
        stream: Resource<DynOutputStream>,
        scratch: Option<(Arc<ScratchMeter>, Arc<std::fs::File>)>,
        position: Option<u64>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let Some((meter, file)) = scratch else {
            return Ok(stream);
        };
        let inner = self.table.delete(stream)?;
        let counted: DynOutputStream = Box::new(ScratchStream {
            inner,
            meter,
            file,
            position,
        });
        Ok(self.table.push(counted)?)
    }
}

impl types::HostDirectoryEntryStream for FilesView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        types::HostDirectoryEntryStream::read_directory_entry(&mut self.inner(), stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        types::HostDirectoryEntryStream::drop(&mut self.inner(), stream)
    }
}

/// A scratch file's output stream, counted before each write.
struct ScratchStream {
    inner: DynOutputStream,
    meter: Arc<ScratchMeter>,
    file: Arc<std::fs::File>,
    /// Where the next write lands; `None` when appending.
    position: Option<u64>,
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for ScratchStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[wasmtime_wasi_io::async_trait]
impl OutputStream for ScratchStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let len = bytes.len() as u64;
        if !self.meter.grow(&self.file, self.position, len) {
            return Err(StreamError::trap(
                &Failure::ScratchFull {
                    limit: self.meter.limit,
                }
                .to_string(),
            ));
        }
        self.inner.write(bytes)?;
        if let Some(position) = &mut self.position {
            *position += len;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}
