//! Running under the Windows Service Control Manager: `wbd-collector service --config FILE`
//! is the installed service's command line (deploy/collector/Install-WbdCollector.ps1). The
//! SCM's Stop and Shutdown turn into the same graceful shutdown as Ctrl-C: running probes get
//! their grace period, spooled results stay on disk.

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

/// The name the service is installed under (deploy/collector/Install-WbdCollector.ps1).
pub const SERVICE_NAME: &str = "WbdCollector";

/// What the service runs once the SCM started it: the agent loop until `shutdown` turns true;
/// returns the process exit code.
pub type ServiceBody = Box<dyn FnOnce(watch::Receiver<bool>) -> u32 + Send>;

static BODY: OnceLock<std::sync::Mutex<Option<ServiceBody>>> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM; returns when the service has stopped.
pub fn run(body: ServiceBody) -> Result<(), windows_service::Error> {
    let _ = BODY.set(std::sync::Mutex::new(Some(body)));
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
}

fn service_main(_arguments: Vec<OsString>) {
    let (tx, rx) = watch::channel(false);
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            let _ = tx.send(true);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(status) = service_control_handler::register(SERVICE_NAME, handler) else { return };
    let report = |state, accept, exit: u32, wait: Duration| {
        let _ = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: ServiceExitCode::Win32(exit),
            checkpoint: 0,
            wait_hint: wait,
            process_id: None,
        });
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        0,
        Duration::ZERO,
    );
    let body = BODY.get().and_then(|b| b.lock().ok()).and_then(|mut b| b.take());
    let exit = match body {
        Some(body) => body(rx),
        None => 1,
    };
    report(ServiceState::Stopped, ServiceControlAccept::empty(), exit, Duration::ZERO);
}
