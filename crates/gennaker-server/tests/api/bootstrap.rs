//! The first start: an admin and its token file.

use std::os::unix::fs::PermissionsExt;

use gennaker_server::{ServerConfig, bootstrap_admin, hash_token};
use gennaker_store::testing::TestDatabase;
use gennaker_store::{SqlStore, Store, now_millis};

use crate::harness::*;

api_test!(generated_admin_token_file, |backend| {
    let server = Server::start_with(
        backend,
        Options {
            admin_token: None,
            ..Options::default()
        },
    )
    .await;
    let path = server.token_file.clone().expect("a token file");
    assert_eq!(path, server.config.data_dir.join("admin-token"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let text = std::fs::read_to_string(&path).unwrap();
    let token = text.trim();
    assert!(token.starts_with("gnk_") && token.len() == 68, "{token}");
    let me = server.get("/api/v1/me", token).await.expect(200);
    assert_eq!(me["name"], "admin");
    assert_eq!(me["admin"], true);

    // A second start creates nothing new and leaves the file alone.
    let again = bootstrap_admin(&server.store, &server.config)
        .await
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(user_count(&server.store).await, 1);
    assert_eq!(server.store.list_tokens(None).await.unwrap().len(), 1);
    server.get("/api/v1/me", token).await.expect(200);
});

api_test!(configured_admin_token, |backend| {
    let server = Server::start(backend).await;
    assert_eq!(server.token_file, None);
    assert!(!server.config.data_dir.join("admin-token").exists());
    let me = server.get("/api/v1/me", ADMIN_TOKEN).await.expect(200);
    assert_eq!(me["admin"], true);
    let again = bootstrap_admin(&server.store, &server.config)
        .await
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(user_count(&server.store).await, 1);
    assert_eq!(server.store.list_tokens(None).await.unwrap().len(), 1);

    // A new configured token on a later start is added for the existing admin.
    let mut changed = server.config.clone();
    changed.admin_token = Some("gnk_another_admin_token".to_owned());
    bootstrap_admin(&server.store, &changed).await.unwrap();
    assert_eq!(user_count(&server.store).await, 1);
    server
        .get("/api/v1/me", "gnk_another_admin_token")
        .await
        .expect(200);
    server.get("/api/v1/me", ADMIN_TOKEN).await.expect(200);
});

/// A migrated store and settings for a first start with a generated token.
async fn first_start(
    backend: TestBackend,
) -> (TestDatabase, SqlStore, tempfile::TempDir, ServerConfig) {
    let (db, store) = TestDatabase::store(backend).await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        data_dir.path().to_owned(),
        db.url.clone(),
    );
    (db, store, data_dir, config)
}

/// Whether the store accepts the token in `path`.
async fn file_token_works(store: &SqlStore, path: &std::path::Path) -> bool {
    let token = std::fs::read_to_string(path).unwrap();
    store
        .authenticate(&hash_token(token.trim()), now_millis())
        .await
        .unwrap()
        .is_some()
}

api_test!(
    a_failed_first_start_leaves_no_admin_without_a_token,
    |backend| {
        let (_db, store, data_dir, mut config) = first_start(backend).await;
        // The token file cannot be written: the data "directory" is a file.
        let not_a_dir = data_dir.path().join("plain-file");
        std::fs::write(&not_a_dir, "").unwrap();
        config.data_dir = not_a_dir;
        assert!(bootstrap_admin(&store, &config).await.is_err());
        assert_eq!(
            user_count(&store).await,
            0,
            "no admin whose token nobody has"
        );

        // Once the directory is fixed, the next start bootstraps as if nothing happened.
        config.data_dir = data_dir.path().to_owned();
        let path = bootstrap_admin(&store, &config)
            .await
            .unwrap()
            .expect("a token file");
        assert!(file_token_works(&store, &path).await);
        assert_eq!(user_count(&store).await, 1);
    }
);

api_test!(
    an_old_token_file_is_replaced_readable_only_by_its_owner,
    |backend| {
        let (_db, store, data_dir, config) = first_start(backend).await;
        let path = data_dir.path().join("admin-token");
        std::fs::write(&path, "gnk_stale\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        assert_eq!(
            bootstrap_admin(&store, &config).await.unwrap(),
            Some(path.clone())
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        assert_ne!(std::fs::read_to_string(&path).unwrap(), "gnk_stale\n");
        assert!(file_token_works(&store, &path).await);
        let leftovers: Vec<_> = std::fs::read_dir(data_dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["admin-token"], "staged files are cleaned up");
    }
);

api_test!(
    a_revoked_admin_token_stays_revoked_and_the_server_starts,
    |backend| {
        let server = Server::start(backend).await;
        let tokens = server.store.list_tokens(Some("admin")).await.unwrap();
        server.store.revoke_token(&tokens[0].id).await.unwrap();
        server.get("/api/v1/me", ADMIN_TOKEN).await.expect(401);

        // The same GENNAKER_ADMIN_TOKEN on the next start: no UNIQUE violation, no revival.
        assert_eq!(
            bootstrap_admin(&server.store, &server.config)
                .await
                .unwrap(),
            None
        );
        server.get("/api/v1/me", ADMIN_TOKEN).await.expect(401);
        assert_eq!(
            server.store.list_tokens(Some("admin")).await.unwrap().len(),
            1
        );
    }
);
