//! The first start: an admin and its token file.

use std::os::unix::fs::PermissionsExt;

use gennaker_server::bootstrap_admin;
use gennaker_store::Store;

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
