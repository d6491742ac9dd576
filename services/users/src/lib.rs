//! users: accounts and profiles. Profile reads are cache-aside (Redis in front of
//! Postgres); every write invalidates the cached profile after it commits.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use service_kit::cache::JsonBytes;
use service_kit::extract::{Json, Path, Validate, check_len};
use service_kit::sqlx::migrate::Migrator;
use service_kit::utoipa::ToSchema;
use service_kit::utoipa_axum::router::OpenApiRouter;
use service_kit::utoipa_axum::routes;
use service_kit::{ApiError, ApiResult, Kit, Problem, idempotency};

pub static MIGRATOR: Migrator = sqlx::migrate!();

pub const SERVICE: &str = "users";
/// The domains users calls.
pub const PEERS: &[&str] = &[];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    /// Incremented on every change.
    pub version: i64,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(min_length = 3, max_length = 254, pattern = "^[^@\\s]+@[^@\\s]+$")]
    pub email: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(min_length = 3, max_length = 254, pattern = "^[^@\\s]+@[^@\\s]+$")]
    pub email: Option<String>,
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
}

fn check_email(email: &str) -> Result<(), ApiError> {
    check_len("email", email, 3, 254)?;
    let valid = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !email.chars().any(char::is_whitespace);
    if !valid {
        return Err(ApiError::invalid("email", "must look like name@domain"));
    }
    Ok(())
}

impl Validate for NewUser {
    fn validate(&self) -> Result<(), ApiError> {
        check_email(&self.email)?;
        check_len("name", &self.name, 1, 100)
    }
}

impl Validate for UserPatch {
    fn validate(&self) -> Result<(), ApiError> {
        if let Some(email) = &self.email {
            check_email(email)?;
        }
        if let Some(name) = &self.name {
            check_len("name", name, 1, 100)?;
        }
        Ok(())
    }
}

fn cache_key(id: i64) -> String {
    format!("user:v1:{id}")
}

/// The routes, with `kit` as their state.
pub fn router(kit: Kit) -> OpenApiRouter {
    let create = OpenApiRouter::new()
        .routes(routes!(create_user))
        .route_layer(axum::middleware::from_fn_with_state(
            kit.idempotency(),
            idempotency::layer,
        ));
    OpenApiRouter::new()
        .routes(routes!(get_user, update_user))
        .merge(create)
        .with_state(kit)
}

/// Create a user. Safe to retry with an `Idempotency-Key` header.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 409, description = "The email is taken", body = Problem, content_type = "application/problem+json")))]
async fn create_user(
    State(kit): State<Kit>,
    Json(new): Json<NewUser>,
) -> ApiResult<(StatusCode, axum::Json<User>)> {
    let user = sqlx::query_as::<_, User>(
        "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id, email, name, version",
    )
    .bind(&new.email)
    .bind(&new.name)
    .fetch_one(&kit.db)
    .await
    .map_err(email_taken)?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

fn email_taken(e: sqlx::Error) -> ApiError {
    match ApiError::from(e) {
        ApiError::Conflict { .. } => {
            ApiError::conflict("email-taken", "a user with this email exists")
        }
        other => other,
    }
}

/// A user's profile (cached).
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
async fn get_user(State(kit): State<Kit>, Path(id): Path<i64>) -> ApiResult<JsonBytes> {
    kit.cache
        .get_or_load_json(&cache_key(id), || load(&kit, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))
}

async fn load(kit: &Kit, id: i64) -> ApiResult<Option<User>> {
    Ok(
        sqlx::query_as::<_, User>("SELECT id, email, name, version FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&kit.db)
            .await?,
    )
}

/// Cache-aside lookup of one user.
pub async fn find(kit: &Kit, id: i64) -> ApiResult<Option<User>> {
    kit.cache
        .get_or_load(&cache_key(id), || load(kit, id))
        .await
}

/// Change a user's email or name.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UserPatch,
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The email is taken", body = Problem, content_type = "application/problem+json")))]
async fn update_user(
    State(kit): State<Kit>,
    Path(id): Path<i64>,
    Json(patch): Json<UserPatch>,
) -> ApiResult<axum::Json<User>> {
    let user = sqlx::query_as::<_, User>(
        "UPDATE users SET email = COALESCE($2, email), name = COALESCE($3, name), \
         version = version + 1, updated_at = now() WHERE id = $1 \
         RETURNING id, email, name, version",
    )
    .bind(id)
    .bind(&patch.email)
    .bind(&patch.name)
    .fetch_optional(&kit.db)
    .await
    .map_err(email_taken)?
    .ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    // After the commit: a reader between the UPDATE and this delete may still see the old
    // profile, for at most that window.
    kit.cache.invalidate(&cache_key(id)).await;
    Ok(axum::Json(user))
}
