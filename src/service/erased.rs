//! A service with its session type erased, as the workers hold it.

use std::any::Any;

use super::{ConnInfo, Response, Service, ServiceError};

/// A service with its session type erased, as the workers hold it: the
/// session travels as `Box<dyn Any + Send>` (no allocation for `()`), and
/// each call is one type check away from the typed [`Service::call`].
pub(crate) trait ErasedService: Send + Sync + 'static {
    fn open_session(&self, conn: &ConnInfo) -> Box<dyn Any + Send>;
    fn call_with(
        &self,
        session: &mut (dyn Any + Send),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError>;
}

impl<S: Service> ErasedService for S {
    fn open_session(&self, conn: &ConnInfo) -> Box<dyn Any + Send> {
        Box::new(Service::open(self, conn))
    }

    fn call_with(
        &self,
        session: &mut (dyn Any + Send),
        request: &[u8],
        response: &mut Response<'_>,
    ) -> Result<(), ServiceError> {
        match session.downcast_mut::<S::Session>() {
            Some(session) => Service::call(self, session, request, response),
            // Sessions are only ever made by `open_session` above.
            None => Err(ServiceError(
                "internal error: session of another type".into(),
            )),
        }
    }
}
