//! Owners over the API: created, updated (idempotent by request id, at a
//! version), read and listed by team, with every bad field refused.

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::owner_service_client::OwnerServiceClient;
use tonic::transport::Channel;

fn owners(server: &TestServer) -> OwnerServiceClient<Channel> {
    OwnerServiceClient::new(server.channel.clone())
}

fn rep(id: &str, teams: &[&str]) -> pb::Owner {
    pb::Owner {
        id: id.to_owned(),
        display_name: format!("Rep {id}"),
        teams: teams.iter().map(|t| (*t).to_owned()).collect(),
        territories: vec!["de".to_owned()],
        capacity: Some(5),
        weight: 2,
        available: true,
        ..Default::default()
    }
}

async fn owners_are_created_updated_read_and_listed_by_team(server: TestServer) -> anyhow::Result<()> {
    let mut client = owners(&server);
    let create = pb::CreateOwnerRequest {
        request_id: "o-1".to_owned(),
        owner: Some(pb::Owner {
            teams: vec![" emea ".to_owned(), "emea".to_owned(), "enterprise".to_owned()],
            ..rep(" ana ", &[])
        }),
    };
    let ana = client
        .create_owner(create.clone())
        .await?
        .into_inner()
        .owner
        .expect("an owner");
    assert_eq!((ana.id.as_str(), ana.version), ("ana", 1));
    assert_eq!(ana.teams, ["emea", "enterprise"]);
    assert_eq!((ana.capacity, ana.weight, ana.available), (Some(5), 2, true));
    // A retry answers the first result; the id taken is ALREADY_EXISTS.
    let again = client.create_owner(create).await?.into_inner().owner;
    assert_eq!(again.as_ref(), Some(&ana));
    let taken = client
        .create_owner(pb::CreateOwnerRequest {
            owner: Some(rep("ana", &["amer"])),
            ..Default::default()
        })
        .await
        .expect_err("taken");
    assert_eq!(taken.code(), tonic::Code::AlreadyExists);
    for (id, teams) in [
        ("ben", vec!["emea"]),
        ("chloe", vec!["amer"]),
        ("dan", vec!["emea"]),
    ] {
        client
            .create_owner(pb::CreateOwnerRequest {
                owner: Some(rep(id, &teams)),
                ..Default::default()
            })
            .await?;
    }
    // Out of office, capacity lifted, at version 1 only.
    let update = pb::UpdateOwnerRequest {
        request_id: "o-2".to_owned(),
        owner: Some(pb::Owner {
            available: false,
            capacity: None,
            ..rep("ana", &["emea"])
        }),
        expected_version: 1,
    };
    let updated = client
        .update_owner(update.clone())
        .await?
        .into_inner()
        .owner
        .expect("an owner");
    assert_eq!(
        (updated.version, updated.available, updated.capacity),
        (2, false, None)
    );
    assert_eq!(updated.created_at, ana.created_at);
    assert_eq!(
        client.update_owner(update).await?.into_inner().owner,
        Some(updated.clone())
    );
    let stale = client
        .update_owner(pb::UpdateOwnerRequest {
            owner: Some(rep("ana", &["emea"])),
            expected_version: 1,
            ..Default::default()
        })
        .await
        .expect_err("at version 2");
    assert_eq!(stale.code(), tonic::Code::Aborted);
    let read = client
        .get_owner(pb::GetOwnerRequest { id: "ana".to_owned() })
        .await?
        .into_inner()
        .owner;
    assert_eq!(read, Some(updated));
    // A team's owners, a page of two at a time.
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_owners(pb::ListOwnersRequest {
                team: "emea".to_owned(),
                page_size: 2,
                page_token: token,
            })
            .await?
            .into_inner();
        assert!(page.owners.len() <= 2);
        ids.extend(page.owners.into_iter().map(|o| o.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids, ["ana", "ben", "dan"]);
    let all = client
        .list_owners(pb::ListOwnersRequest::default())
        .await?
        .into_inner();
    assert_eq!(all.owners.len(), 4);
    Ok(())
}

async fn bad_owner_requests_are_refused_with_their_fields(server: TestServer) -> anyhow::Result<()> {
    let mut client = owners(&server);
    let bad = |owner: pb::Owner| pb::CreateOwnerRequest {
        owner: Some(owner),
        ..Default::default()
    };
    for (request, field) in [
        (pb::CreateOwnerRequest::default(), "owner"),
        (
            bad(pb::Owner {
                id: " ".to_owned(),
                ..rep("x", &[])
            }),
            "owner.id",
        ),
        (
            bad(pb::Owner {
                id: "x".repeat(129),
                ..rep("x", &[])
            }),
            "owner.id",
        ),
        (
            bad(pb::Owner {
                display_name: String::new(),
                ..rep("x", &[])
            }),
            "owner.display_name",
        ),
        (
            bad(pb::Owner {
                teams: vec![String::new()],
                ..rep("x", &[])
            }),
            "owner.teams[0]",
        ),
        (
            bad(pb::Owner {
                teams: (0..51).map(|i| format!("t{i}")).collect(),
                ..rep("x", &[])
            }),
            "owner.teams",
        ),
        (
            bad(pb::Owner {
                territories: vec!["y".repeat(201)],
                ..rep("x", &[])
            }),
            "owner.territories[0]",
        ),
        (
            bad(pb::Owner {
                capacity: Some(-1),
                ..rep("x", &[])
            }),
            "owner.capacity",
        ),
        (
            bad(pb::Owner {
                weight: 1_001,
                ..rep("x", &[])
            }),
            "owner.weight",
        ),
        (
            bad(pb::Owner {
                weight: -3,
                ..rep("x", &[])
            }),
            "owner.weight",
        ),
    ] {
        assert_invalid(client.create_owner(request.clone()).await, field, &request);
    }
    let missing = client
        .update_owner(pb::UpdateOwnerRequest {
            owner: Some(rep("nobody", &[])),
            ..Default::default()
        })
        .await
        .expect_err("no such owner");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let request = pb::GetOwnerRequest::default();
    assert_invalid(client.get_owner(request.clone()).await, "id", &request);
    let request = pb::ListOwnersRequest {
        page_token: "not-a-token".to_owned(),
        ..Default::default()
    };
    assert_invalid(client.list_owners(request.clone()).await, "page_token", &request);
    Ok(())
}

scenarios! {
    owners_are_created_updated_read_and_listed_by_team,
    bad_owner_requests_are_refused_with_their_fields,
}
