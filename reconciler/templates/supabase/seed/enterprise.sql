-- Enterprise demo: the branded company is a large employer whose in-house talent team
-- owns every job and works with a panel of outside agencies.
SELECT democtl.seed_demo(
    tenant_kind => 'employer',
    employers => 0,
    agencies => 3 + democtl.seed_scale() / 4,
    recruiters_per_company => 5,
    jobs => 15 * democtl.seed_scale(),
    candidates => 50 * democtl.seed_scale(),
    applications_per_candidate => 2,
    split_share => 0.35
) AS rows_seeded;
