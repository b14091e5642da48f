use guildhall_spec::permissions::{
    GuildContext, MemberContext, Overwrite, OverwriteTarget, RolePermissions,
};
use guildhall_spec::{Permissions, RoleId, UserId};

fn bits(value: &serde_json::Value) -> Permissions {
    value.as_str().expect("decimal string").parse().expect("permission bits")
}

fn roles(case: &serde_json::Value) -> Vec<RolePermissions> {
    case["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|role| RolePermissions {
            id: RoleId::parse(role["id"].as_str().expect("id")).expect("role id"),
            permissions: bits(&role["permissions"]),
            position: role["position"].as_i64().expect("position"),
        })
        .collect()
}

fn member(value: &serde_json::Value) -> (UserId, Vec<RoleId>) {
    let user = UserId::parse(value["user_id"].as_str().expect("user_id")).expect("user id");
    let roles = value["roles"]
        .as_array()
        .expect("member roles")
        .iter()
        .map(|id| RoleId::parse(id.as_str().expect("role id")).expect("role id"))
        .collect();
    (user, roles)
}

fn overwrites(value: &serde_json::Value) -> Option<Vec<Overwrite>> {
    let list = value.as_array()?;
    Some(
        list.iter()
            .map(|overwrite| {
                let id = overwrite["id"].as_str().expect("overwrite id");
                let target = match overwrite["kind"].as_str() {
                    Some("role") => OverwriteTarget::Role(RoleId::parse(id).expect("role id")),
                    _ => OverwriteTarget::Member(UserId::parse(id).expect("user id")),
                };
                Overwrite {
                    target,
                    allow: bits(&overwrite["allow"]),
                    deny: bits(&overwrite["deny"]),
                }
            })
            .collect(),
    )
}

#[test]
fn agrees_with_permission_vectors() {
    let document = super::vectors("permissions.json");
    let cases = document["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let owner = UserId::parse(case["owner_id"].as_str().expect("owner")).expect("owner id");
        let roles = roles(case);
        let guild = GuildContext { owner: &owner, roles: &roles };
        let (user, member_roles) = member(&case["member"]);
        let member = MemberContext { user_id: &user, roles: &member_roles };
        let actual = match overwrites(&case["channel_overwrites"]) {
            Some(overwrites) => guild.channel_permissions(&member, &overwrites),
            None => guild.base_permissions(&member),
        };
        let expected = bits(&case["expected"]);
        if actual != expected {
            failures
                .push(format!("{name}: expected {expected} {expected:?}, got {actual} {actual:?}"));
        }
    }
    super::assert_no_failures("permission", cases.len(), &failures);
}

#[test]
fn agrees_with_hierarchy_vectors() {
    let document = super::vectors("permissions.json");
    let cases = document["hierarchy"].as_array().expect("hierarchy cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let owner = UserId::parse(case["owner_id"].as_str().expect("owner")).expect("owner id");
        let roles = roles(case);
        let guild = GuildContext { owner: &owner, roles: &roles };
        let (actor_id, actor_roles) = member(&case["actor"]);
        let actor = MemberContext { user_id: &actor_id, roles: &actor_roles };
        let actual = if case["target_member"].is_object() {
            let (target_id, target_roles) = member(&case["target_member"]);
            guild.outranks_member(
                &actor,
                &MemberContext { user_id: &target_id, roles: &target_roles },
            )
        } else {
            let role_id = case["target_role"].as_str().expect("target_role");
            let position = roles
                .iter()
                .find(|role| role.id.as_str() == role_id)
                .expect("target role exists")
                .position;
            guild.outranks_role(&actor, position)
        };
        if Some(actual) != case["allowed"].as_bool() {
            failures.push(format!("{name}: expected {}, got {actual}", case["allowed"]));
        }
    }
    super::assert_no_failures("hierarchy", cases.len(), &failures);
}
