-- Startup demo: the branded company is a small employer hiring its first teams through
-- two agencies.
SELECT democtl.seed_demo(
    tenant_kind => 'employer',
    employers => 0,
    agencies => 2,
    recruiters_per_company => 3,
    jobs => 4 * democtl.seed_scale(),
    candidates => 50 * democtl.seed_scale(),
    applications_per_candidate => 2,
    split_share => 0.25
) AS rows_seeded;
