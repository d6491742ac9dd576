//! The reconcile's errors: one variant per failed operation, each with a static reason that
//! is both the metric label and the Event reason.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read Deployment {name}")]
    FetchDeployment {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to hand Deployment {name}'s replicas to the autoscaler")]
    AdoptReplicas {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply Deployment {name}")]
    ApplyDeployment {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply Service {name}")]
    ApplyService {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply PodDisruptionBudget {name}")]
    ApplyDisruptionBudget {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete PodDisruptionBudget {name}")]
    DeleteDisruptionBudget {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to clear the autoscaler's status of {name}")]
    ClearAutoscalerStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
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
            Self::FetchDeployment { .. } => "FetchDeployment",
            Self::AdoptReplicas { .. } => "AdoptReplicas",
            Self::ApplyDeployment { .. } => "ApplyDeployment",
            Self::ApplyService { .. } => "ApplyService",
            Self::ApplyDisruptionBudget { .. } => "ApplyDisruptionBudget",
            Self::DeleteDisruptionBudget { .. } => "DeleteDisruptionBudget",
            Self::ClearAutoscalerStatus { .. } => "ClearAutoscalerStatus",
            Self::UpdateStatus { .. } => "UpdateStatus",
        }
    }

    fn source_api(&self) -> &kube::Error {
        match self {
            Self::FetchDeployment { source, .. }
            | Self::AdoptReplicas { source, .. }
            | Self::ApplyDeployment { source, .. }
            | Self::ApplyService { source, .. }
            | Self::ApplyDisruptionBudget { source, .. }
            | Self::DeleteDisruptionBudget { source, .. }
            | Self::ClearAutoscalerStatus { source, .. }
            | Self::UpdateStatus { source, .. } => source,
        }
    }

    /// Whether the API server refused the write as invalid (a 4xx other than a conflict,
    /// throttling or a race): retrying the same write cannot help, the user must act.
    pub fn is_rejected(&self) -> bool {
        crate::controllers::is_rejected(self.source_api())
    }
}
