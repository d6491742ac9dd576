//! The reconcile's errors: one variant per failed operation, each with a static reason that
//! is both the metric label and the Event reason.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read Namespace {name}")]
    FetchNamespace {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to list the MarketplaceServices of namespace {namespace}")]
    ListServices {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply Namespace {name}")]
    ApplyNamespace {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply {kind} {name}")]
    ApplyChild {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to list the {kind}s of the environment")]
    ListChildren {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {kind} {name}")]
    DeleteChild {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete Namespace {name}")]
    DeleteNamespace {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Not a failure: the namespace is going, and the finalizer stays until it has gone.
    #[error("Namespace {name} is still terminating")]
    NamespaceTerminating { name: String },
    #[error("failed to add the finalizer")]
    AddFinalizer {
        #[source]
        source: kube::Error,
    },
    #[error("failed to remove the finalizer")]
    RemoveFinalizer {
        #[source]
        source: kube::Error,
    },
    #[error("failed to handle the finalizer: {message}")]
    Finalizer { message: String },
    #[error("failed to update the status of {name}")]
    UpdateStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::FetchNamespace { .. } => "FetchNamespace",
            Self::ListServices { .. } => "ListServices",
            Self::ApplyNamespace { .. } => "ApplyNamespace",
            Self::ApplyChild { .. } => "ApplyChild",
            Self::ListChildren { .. } => "ListChildren",
            Self::DeleteChild { .. } => "DeleteChild",
            Self::DeleteNamespace { .. } => "DeleteNamespace",
            Self::NamespaceTerminating { .. } => "NamespaceTerminating",
            Self::AddFinalizer { .. } => "AddFinalizer",
            Self::RemoveFinalizer { .. } => "RemoveFinalizer",
            Self::Finalizer { .. } => "Finalizer",
            Self::UpdateStatus { .. } => "UpdateStatus",
        }
    }

    fn source_api(&self) -> Option<&kube::Error> {
        match self {
            Self::FetchNamespace { source, .. }
            | Self::ListServices { source, .. }
            | Self::ApplyNamespace { source, .. }
            | Self::ApplyChild { source, .. }
            | Self::ListChildren { source, .. }
            | Self::DeleteChild { source, .. }
            | Self::DeleteNamespace { source, .. }
            | Self::AddFinalizer { source }
            | Self::RemoveFinalizer { source }
            | Self::UpdateStatus { source, .. } => Some(source),
            Self::NamespaceTerminating { .. } | Self::Finalizer { .. } => None,
        }
    }

    /// Whether the API server refused the write as invalid (a 4xx other than a conflict,
    /// throttling or a race): retrying the same write cannot help, the user must act.
    pub fn is_rejected(&self) -> bool {
        self.source_api()
            .is_some_and(crate::controllers::is_rejected)
    }

    /// Whether this only says "not yet": retried soon, neither logged as a failure nor
    /// counted as one.
    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::NamespaceTerminating { .. })
    }

    /// The reconcile's error behind a finalizer helper's.
    pub fn from_finalizer(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(source) => Self::AddFinalizer { source },
            F::RemoveFinalizer(source) => Self::RemoveFinalizer { source },
            other => Self::Finalizer {
                message: other.to_string(),
            },
        }
    }
}
