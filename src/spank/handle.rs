//! [`Spank`] over a real `spank_t`: every call into Slurm goes through here.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr;

use super::ffi::{self, spank_item_t, spank_t, Api};
use super::{options, Context, OptionSpec, Spank, SpankError, SpankResult, StepId};

pub struct SpankHandle {
    raw: spank_t,
    api: &'static Api,
}

fn cstring(what: &str, s: &str) -> SpankResult<CString> {
    CString::new(s).map_err(|_| SpankError::Invalid(format!("{what} contains a NUL byte: {s:?}")))
}

/// Copies a NULL-terminated C string array.
///
/// # Safety
/// `arr` is NULL or points to a NULL-terminated array of C strings.
unsafe fn string_array(arr: *const *const c_char, max: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    if arr.is_null() {
        return out;
    }
    let mut i = 0;
    while max.is_none_or(|m| i < m) {
        let p = *arr.add(i);
        if p.is_null() {
            break;
        }
        out.push(CStr::from_ptr(p).to_string_lossy().into_owned());
        i += 1;
    }
    out
}

impl SpankHandle {
    /// Wraps the handle Slurm passed to a callback; `None` outside Slurm.
    pub fn new(raw: spank_t) -> Option<SpankHandle> {
        ffi::api().map(|api| SpankHandle { raw, api })
    }

    fn check(&self, call: &str, rc: ffi::spank_err_t) -> SpankResult<()> {
        if rc == ffi::ESPANK_SUCCESS {
            return Ok(());
        }
        // SAFETY: spank_strerror returns a static string for any code.
        let msg = unsafe { CStr::from_ptr((self.api.strerror)(rc)) };
        Err(SpankError::Slurm {
            call: call.to_string(),
            message: msg.to_string_lossy().into(),
        })
    }

    fn item_u32(&self, item: spank_item_t, name: &str) -> SpankResult<u32> {
        let mut v: u32 = 0;
        // SAFETY: these items take a (uint32_t *) per spank.h.
        let rc = unsafe { (self.api.get_item)(self.raw, item, &mut v as *mut u32) };
        self.check(name, rc).map(|_| v)
    }

    fn item_i32(&self, item: spank_item_t, name: &str) -> SpankResult<i32> {
        let mut v: c_int = 0;
        // SAFETY: these items take an (int *) or (pid_t *) per spank.h.
        let rc = unsafe { (self.api.get_item)(self.raw, item, &mut v as *mut c_int) };
        self.check(name, rc).map(|_| v)
    }

    fn item_string(&self, item: spank_item_t, name: &str) -> SpankResult<String> {
        let mut p: *const c_char = ptr::null();
        // SAFETY: these items take a (char **) per spank.h.
        let rc = unsafe { (self.api.get_item)(self.raw, item, &mut p as *mut *const c_char) };
        self.check(name, rc)?;
        if p.is_null() {
            return Ok(String::new());
        }
        // SAFETY: Slurm returned a NUL-terminated string it owns.
        Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

impl Spank for SpankHandle {
    fn context(&self) -> Context {
        // SAFETY: spank_context takes no arguments.
        match unsafe { (self.api.context)() } {
            ffi::S_CTX_LOCAL => Context::Local,
            ffi::S_CTX_REMOTE => Context::Remote,
            ffi::S_CTX_ALLOCATOR => Context::Allocator,
            ffi::S_CTX_SLURMD => Context::Slurmd,
            _ => Context::JobScript,
        }
    }

    fn uid(&self) -> SpankResult<u32> {
        self.item_u32(ffi::S_JOB_UID, "S_JOB_UID")
    }

    fn gid(&self) -> SpankResult<u32> {
        self.item_u32(ffi::S_JOB_GID, "S_JOB_GID")
    }

    fn supplementary_gids(&self) -> SpankResult<Vec<u32>> {
        let mut gids: *const libc::gid_t = ptr::null();
        let mut n: c_int = 0;
        // SAFETY: S_JOB_SUPPLEMENTARY_GIDS takes (gid_t **, int *).
        let rc = unsafe {
            (self.api.get_item)(
                self.raw,
                ffi::S_JOB_SUPPLEMENTARY_GIDS,
                &mut gids as *mut *const libc::gid_t,
                &mut n as *mut c_int,
            )
        };
        self.check("S_JOB_SUPPLEMENTARY_GIDS", rc)?;
        if gids.is_null() || n <= 0 {
            return Ok(Vec::new());
        }
        // SAFETY: Slurm returned an array of n gids it owns.
        Ok(unsafe { std::slice::from_raw_parts(gids, n as usize) }.to_vec())
    }

    fn job_id(&self) -> SpankResult<u32> {
        self.item_u32(ffi::S_JOB_ID, "S_JOB_ID")
    }

    fn step_id(&self) -> SpankResult<StepId> {
        self.item_u32(ffi::S_JOB_STEPID, "S_JOB_STEPID")
            .map(StepId::from_raw)
    }

    fn local_task_count(&self) -> SpankResult<u32> {
        self.item_u32(ffi::S_JOB_LOCAL_TASK_COUNT, "S_JOB_LOCAL_TASK_COUNT")
    }

    fn task_id(&self) -> SpankResult<u32> {
        self.item_i32(ffi::S_TASK_ID, "S_TASK_ID").map(|v| v as u32)
    }

    fn task_global_id(&self) -> SpankResult<u32> {
        self.item_u32(ffi::S_TASK_GLOBAL_ID, "S_TASK_GLOBAL_ID")
    }

    fn task_pid(&self) -> SpankResult<i32> {
        self.item_i32(ffi::S_TASK_PID, "S_TASK_PID")
    }

    fn task_exit_status(&self) -> SpankResult<i32> {
        self.item_i32(ffi::S_TASK_EXIT_STATUS, "S_TASK_EXIT_STATUS")
    }

    fn job_alloc_cores(&self) -> SpankResult<String> {
        self.item_string(ffi::S_JOB_ALLOC_CORES, "S_JOB_ALLOC_CORES")
    }

    fn step_alloc_cores(&self) -> SpankResult<String> {
        self.item_string(ffi::S_STEP_ALLOC_CORES, "S_STEP_ALLOC_CORES")
    }

    fn cpus_per_task(&self) -> SpankResult<u32> {
        self.item_u32(ffi::S_STEP_CPUS_PER_TASK, "S_STEP_CPUS_PER_TASK")
    }

    fn job_env(&self) -> SpankResult<Vec<String>> {
        let mut env: *const *const c_char = ptr::null();
        // SAFETY: S_JOB_ENV takes (char ***).
        let rc = unsafe {
            (self.api.get_item)(
                self.raw,
                ffi::S_JOB_ENV,
                &mut env as *mut *const *const c_char,
            )
        };
        self.check("S_JOB_ENV", rc)?;
        // SAFETY: Slurm returned a NULL-terminated array it owns.
        Ok(unsafe { string_array(env, None) })
    }

    fn job_argv(&self) -> SpankResult<Vec<String>> {
        let mut argc: c_int = 0;
        let mut argv: *const *const c_char = ptr::null();
        // SAFETY: S_JOB_ARGV takes (int *, char ***).
        let rc = unsafe {
            (self.api.get_item)(
                self.raw,
                ffi::S_JOB_ARGV,
                &mut argc as *mut c_int,
                &mut argv as *mut *const *const c_char,
            )
        };
        self.check("S_JOB_ARGV", rc)?;
        // SAFETY: argv holds argc strings (and is NULL-terminated).
        Ok(unsafe { string_array(argv, Some(argc.max(0) as usize)) })
    }

    fn slurm_version(&self) -> SpankResult<String> {
        self.item_string(ffi::S_SLURM_VERSION, "S_SLURM_VERSION")
    }

    fn getenv(&self, name: &str) -> SpankResult<Option<String>> {
        let cname = cstring("variable name", name)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let getenv = match self.context() {
                Context::Remote => self.api.getenv,
                _ => self
                    .api
                    .control_getenv
                    .ok_or(SpankError::Unsupported("spank_job_control_getenv"))?,
            };
            // SAFETY: buf is writable for buf.len() bytes.
            let rc = unsafe {
                getenv(
                    self.raw,
                    cname.as_ptr(),
                    buf.as_mut_ptr() as *mut c_char,
                    buf.len() as c_int,
                )
            };
            match rc {
                ffi::ESPANK_SUCCESS => {
                    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                    return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
                }
                ffi::ESPANK_ENV_NOEXIST => return Ok(None),
                ffi::ESPANK_NOSPACE if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
                rc => return self.check("spank_getenv", rc).map(|_| None),
            }
        }
    }

    fn setenv(&mut self, name: &str, value: &str, overwrite: bool) -> SpankResult<()> {
        let cname = cstring("variable name", name)?;
        let cval = cstring("variable value", value)?;
        let setenv = match self.context() {
            Context::Remote => self.api.setenv,
            _ => self
                .api
                .control_setenv
                .ok_or(SpankError::Unsupported("spank_job_control_setenv"))?,
        };
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let rc = unsafe { setenv(self.raw, cname.as_ptr(), cval.as_ptr(), overwrite as c_int) };
        self.check("spank_setenv", rc)
    }

    fn unsetenv(&mut self, name: &str) -> SpankResult<()> {
        let cname = cstring("variable name", name)?;
        // SAFETY: the name is NUL-terminated and outlives the call.
        let rc = unsafe { (self.api.unsetenv)(self.raw, cname.as_ptr()) };
        self.check("spank_unsetenv", rc)
    }

    fn prepend_task_argv(&mut self, argv: &[String]) -> SpankResult<()> {
        let prepend = self
            .api
            .prepend_task_argv
            .ok_or(SpankError::Unsupported("spank_prepend_task_argv"))?;
        let owned: Vec<CString> = argv
            .iter()
            .map(|a| cstring("argument", a))
            .collect::<SpankResult<_>>()?;
        let mut ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(ptr::null());
        // SAFETY: ptrs holds argv.len() valid strings; Slurm copies them.
        let rc = unsafe { prepend(self.raw, argv.len() as c_int, ptrs.as_mut_ptr()) };
        self.check("spank_prepend_task_argv", rc)
    }

    fn register_option(&mut self, spec: &OptionSpec) -> SpankResult<()> {
        let mut opt = options::c_option(spec)?;
        // SAFETY: opt's strings are leaked, so they live as long as Slurm keeps them.
        let rc = unsafe { (self.api.option_register)(self.raw, &mut opt) };
        self.check(&format!("spank_option_register(--{})", spec.name), rc)
    }
}
