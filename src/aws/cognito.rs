//! Credentials for a device that signs in as its own Cognito user.
//!
//! InitiateAuth (USER_PASSWORD_AUTH, the user being the instance id) gives an id token and a
//! refresh token; the identity pool turns the id token into an identity (GetId) and that into
//! temporary AWS credentials (GetCredentialsForIdentity). The SDK's credential cache asks for new
//! credentials shortly before their Expiration; the id token is renewed with REFRESH_TOKEN_AUTH
//! while the refresh token is good, and with the password otherwise. Failures back off with
//! jitter and say in the log why publishing is not possible.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{self, error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_sdk_cognitoidentity as identity;
use aws_sdk_cognitoidentityprovider as idp;
use idp::operation::initiate_auth::InitiateAuthError;
use idp::types::AuthFlowType;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::Authentication;
use crate::instance::InstanceId;
use crate::secret::Secret;

/// Renew the id token this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct CognitoCredentials {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CognitoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoCredentials")
            .field("user", &self.inner.user.as_str())
            .field("user_pool_id", &self.inner.auth.user_pool_id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    idp: idp::Client,
    identity: identity::Client,
    auth: Authentication,
    user: InstanceId,
    state: Mutex<State>,
}

struct State {
    id_token: Option<(Secret, Instant)>,
    refresh_token: Option<Secret>,
    identity_id: Option<String>,
    backoff: Backoff,
    /// After a failure, no new attempt before this; the same error is returned meanwhile.
    retry_at: Option<(Instant, String)>,
    issued: u64,
}

/// Why credentials could not be had, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CognitoError(String);

impl CognitoCredentials {
    /// `unsigned` is an SDK config without credentials: the Cognito sign-in calls are unsigned.
    pub fn new(unsigned: &SdkConfig, auth: Authentication, user: InstanceId) -> Self {
        let state = State {
            id_token: None,
            refresh_token: None,
            identity_id: None,
            backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(300)),
            retry_at: None,
            issued: 0,
        };
        Self {
            inner: Arc::new(Inner {
                idp: idp::Client::new(unsigned),
                identity: identity::Client::new(unsigned),
                auth,
                user,
                state: Mutex::new(state),
            }),
        }
    }

    async fn fetch(&self) -> provider::Result {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        if let Some((at, message)) = &state.retry_at {
            if Instant::now() < *at {
                return Err(CredentialsError::provider_error(CognitoError(
                    message.clone(),
                )));
            }
        }
        match inner.credentials(&mut state).await {
            Ok(creds) => {
                state.backoff.reset();
                state.retry_at = None;
                state.issued += 1;
                let expires = creds
                    .expiry()
                    .and_then(|e| e.duration_since(SystemTime::now()).ok())
                    .map_or_else(|| "unknown".to_owned(), |d| format!("{} s", d.as_secs()));
                if state.issued == 1 {
                    tracing::info!(user = %inner.user, expires_in = %expires, "Signed in to Cognito; got AWS credentials.");
                } else {
                    tracing::info!(user = %inner.user, expires_in = %expires, "Refreshed AWS credentials from Cognito.");
                }
                Ok(creds)
            }
            Err(CognitoError(message)) => {
                let wait = state.backoff.next_delay();
                tracing::warn!(
                    user = %inner.user,
                    retry_in_s = wait.as_secs(),
                    "Cannot get AWS credentials from Cognito, so nothing can be published: {message}"
                );
                state.retry_at = Some((Instant::now() + wait, message.clone()));
                Err(CredentialsError::provider_error(CognitoError(message)))
            }
        }
    }
}

impl ProvideCredentials for CognitoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.fetch())
    }
}

impl Inner {
    async fn credentials(&self, state: &mut State) -> Result<Credentials, CognitoError> {
        let id_token = self.id_token(state).await?;
        let provider = format!(
            "cognito-idp.{}.amazonaws.com/{}",
            self.auth.user_pool_region(),
            self.auth.user_pool_id
        );
        let identity_id = match &state.identity_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .identity
                    .get_id()
                    .account_id(&self.auth.account_id)
                    .identity_pool_id(&self.auth.identity_pool_id)
                    .logins(&provider, id_token.expose())
                    .send()
                    .await
                    .map_err(|e| self.failed("GetId", &e))?;
                let id = out
                    .identity_id()
                    .ok_or_else(|| CognitoError("GetId answered without an identity id".into()))?
                    .to_owned();
                state.identity_id = Some(id.clone());
                id
            }
        };
        let out = self
            .identity
            .get_credentials_for_identity()
            .identity_id(&identity_id)
            .logins(&provider, id_token.expose())
            .send()
            .await
            .map_err(|e| {
                // A stale token or identity is re-established on the next attempt.
                state.id_token = None;
                state.identity_id = None;
                self.failed("GetCredentialsForIdentity", &e)
            })?;
        let c = out.credentials().ok_or_else(|| {
            CognitoError("GetCredentialsForIdentity answered without credentials".into())
        })?;
        let (Some(key), Some(secret), Some(token)) =
            (c.access_key_id(), c.secret_key(), c.session_token())
        else {
            return Err(CognitoError(
                "GetCredentialsForIdentity answered with incomplete credentials".into(),
            ));
        };
        let expiry = c.expiration().and_then(|e| SystemTime::try_from(*e).ok());
        Ok(Credentials::new(
            key,
            secret,
            Some(token.to_owned()),
            expiry,
            "CognitoIdentity",
        ))
    }

    /// A valid id token: the one held, else renewed with the refresh token, else the password.
    async fn id_token(&self, state: &mut State) -> Result<Secret, CognitoError> {
        if let Some((token, expires)) = &state.id_token {
            if Instant::now() + TOKEN_MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        if let Some(refresh) = state.refresh_token.clone() {
            match self
                .initiate_auth(AuthFlowType::RefreshTokenAuth, "REFRESH_TOKEN", &refresh)
                .await
            {
                Ok((token, expires, _)) => {
                    tracing::debug!(user = %self.user, "Renewed the Cognito id token with the refresh token.");
                    state.id_token = Some((token.clone(), expires));
                    return Ok(token);
                }
                Err(e) => {
                    tracing::info!(user = %self.user, "Refresh token not accepted, signing in with the password: {e}");
                    state.refresh_token = None;
                }
            }
        }
        let (token, expires, refresh) = self
            .initiate_auth(
                AuthFlowType::UserPasswordAuth,
                "PASSWORD",
                &self.auth.password,
            )
            .await?;
        state.id_token = Some((token.clone(), expires));
        state.refresh_token = refresh;
        Ok(token)
    }

    async fn initiate_auth(
        &self,
        flow: AuthFlowType,
        key: &str,
        value: &Secret,
    ) -> Result<(Secret, Instant, Option<Secret>), CognitoError> {
        let mut req = self
            .idp
            .initiate_auth()
            .auth_flow(flow)
            .client_id(&self.auth.app_client_id)
            .auth_parameters(key, value.expose());
        if key == "PASSWORD" {
            req = req.auth_parameters("USERNAME", self.user.as_str());
        }
        let out = req.send().await.map_err(|e| self.sign_in_failed(&e))?;
        if let Some(challenge) = out.challenge_name() {
            return Err(CognitoError(format!(
                "Cognito asks user {} to answer the {} challenge; for a device the password must be \
                 permanent (admin-set-user-password --permanent)",
                self.user,
                challenge.as_str()
            )));
        }
        let result = out
            .authentication_result()
            .ok_or_else(|| CognitoError("InitiateAuth answered without tokens".into()))?;
        let token = result
            .id_token()
            .ok_or_else(|| CognitoError("InitiateAuth answered without an id token".into()))?;
        let lifetime = Duration::from_secs(u64::try_from(result.expires_in()).unwrap_or(0).max(60));
        Ok((
            Secret::new(token),
            Instant::now() + lifetime,
            result.refresh_token().map(Secret::new),
        ))
    }

    fn sign_in_failed<R>(&self, e: &idp::error::SdkError<InitiateAuthError, R>) -> CognitoError
    where
        R: std::fmt::Debug + 'static,
    {
        let user = &self.user;
        let pool = &self.auth.user_pool_id;
        let reason = match e.as_service_error() {
            Some(InitiateAuthError::NotAuthorizedException(_)) => {
                format!("Cognito refused the password of user {user} in pool {pool} (NotAuthorizedException): check agent.authentication.password")
            }
            Some(InitiateAuthError::UserNotFoundException(_)) => format!(
                "there is no user {user} in Cognito pool {pool} (UserNotFoundException): add this instance id to systems.txt and provision it"
            ),
            Some(InitiateAuthError::ResourceNotFoundException(_)) => format!(
                "Cognito does not know app client {} (ResourceNotFoundException): check agent.authentication.appClientId",
                self.auth.app_client_id
            ),
            _ => return self.failed("InitiateAuth", e),
        };
        CognitoError(reason)
    }

    fn failed<E, R>(&self, operation: &str, e: &idp::error::SdkError<E, R>) -> CognitoError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let kind = match e {
            idp::error::SdkError::DispatchFailure(_) | idp::error::SdkError::TimeoutError(_) => {
                "network problem: "
            }
            _ => "",
        };
        CognitoError(format!("{operation} failed: {kind}{}", super::describe(e)))
    }
}
