-- Recruiting-agency demo: the branded company is an agency placing candidates with many
-- client employers and splitting fees with partner agencies.
SELECT democtl.seed_demo(
    tenant_kind => 'agency',
    employers => 4 * democtl.seed_scale(),
    agencies => 2 + democtl.seed_scale() / 5,
    recruiters_per_company => 6,
    jobs => 12 * democtl.seed_scale(),
    candidates => 50 * democtl.seed_scale(),
    applications_per_candidate => 3,
    split_share => 0.6
) AS rows_seeded;
