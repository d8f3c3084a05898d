//! Infrastructure routes: load balancers, clusters and server groups of the local
//! provider, and ad-hoc operations run as orchestrations.

use serde_json::{Value, json};

use crate::harness::*;

api_test!(
    operations_run_as_orchestrations_and_show_their_effect,
    |backend| {
        let server = Server::start(backend).await;
        server
            .app(json!({"name": "infra", "email": "team@example.com"}))
            .await;
        let accepted = server
            .post(
                "/api/v1/applications/infra/tasks",
                &server.admin,
                json!({"description": "Create the front door", "job": [{
                    "type": "upsertLoadBalancer", "name": "infra-web", "listen": "127.0.0.1:0",
                    "allowedCidrs": ["127.0.0.0/8"]
                }]}),
            )
            .await
            .expect(202);
        let id = accepted["executionId"].as_str().unwrap().to_owned();
        assert_eq!(accepted["ref"], format!("/api/v1/executions/{id}"));
        let done = server.wait_status(&id, "SUCCEEDED").await;
        assert_eq!(done["type"], "ORCHESTRATION");
        assert_eq!(done["name"], "Create the front door");

        let balancers = server
            .get("/api/v1/applications/infra/loadBalancers", &server.admin)
            .await
            .expect(200);
        let balancer = &balancers[0];
        assert_eq!(balancer["name"], "infra-web");
        assert_eq!(balancer["allowedCidrs"], json!(["127.0.0.0/8"]));
        let address = balancer["address"].as_str().unwrap();
        assert!(
            !address.ends_with(":0"),
            "a real port was chosen: {address}"
        );
        // Nothing is deployed yet: the load balancer answers 503 and names itself.
        let answer = reqwest::get(format!("http://{address}/")).await.unwrap();
        assert_eq!(answer.status(), 503);
        assert!(answer.text().await.unwrap().contains("infra-web"));

        let clusters = server
            .get("/api/v1/applications/infra/clusters", &server.admin)
            .await
            .expect(200);
        assert_eq!(clusters, json!([]));
        let groups = server
            .get("/api/v1/applications/infra/serverGroups", &server.admin)
            .await
            .expect(200);
        assert_eq!(groups, json!([]));

        // Clear errors for what cannot be run.
        let empty = server
            .post(
                "/api/v1/applications/infra/tasks",
                &server.admin,
                json!({"job": []}),
            )
            .await
            .expect(400);
        assert!(
            empty["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no stages"),
            "{empty}"
        );
        let untyped = server
            .post(
                "/api/v1/applications/infra/tasks",
                &server.admin,
                json!({"job": [{"name": "x"}]}),
            )
            .await
            .expect(400);
        assert!(
            untyped["error"]["message"]
                .as_str()
                .unwrap()
                .contains("job[0]"),
            "{untyped}"
        );
        let missing = server
            .post(
                "/api/v1/applications/infra/serverGroups/infra-v000/resize",
                &server.admin,
                json!({"capacity": {"min": 1, "max": 1, "desired": 1}}),
            )
            .await
            .expect(404);
        assert!(
            missing["error"]["message"]
                .as_str()
                .unwrap()
                .contains("infra-v000"),
            "{missing}"
        );
        let unknown = server
            .get(
                "/api/v1/applications/infra/serverGroups?cloudProvider=aws",
                &server.admin,
            )
            .await
            .expect(400);
        assert!(
            unknown["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'aws'"),
            "{unknown}"
        );

        // Deleting the load balancer is an operation too.
        let accepted = server
            .post(
                "/api/v1/applications/infra/tasks",
                &server.admin,
                json!({"job": [{"type": "deleteLoadBalancer", "loadBalancerName": "infra-web"}]}),
            )
            .await
            .expect(202);
        server
            .wait_status(accepted["executionId"].as_str().unwrap(), "SUCCEEDED")
            .await;
        let balancers: Value = server
            .get("/api/v1/applications/infra/loadBalancers", &server.admin)
            .await
            .expect(200);
        assert_eq!(balancers, json!([]));
    }
);
