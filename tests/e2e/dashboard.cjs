// Drives the dashboard of a running demo federation in headless Chromium (Playwright) and
// checks what a person would see. Run by tests/e2e/dashboard.rs, which passes:
//   DASHBOARD_URL   https://localhost:<port>/dashboard/ (certificate from the demo's own CA)
//   NODE_DASHBOARD_URL the same page on the colombo node, read from its verified mirror
//   ARTIFACTS_DIR   where the screenshots go
//   PLAYWRIGHT_CORE path of the playwright-core package
//   CHROMIUM        the browser executable
//   PROFILE_ROOT    a fresh directory for the browser profiles
// Prints one line per check; exits non-zero on the first failure.
'use strict';

const path = require('path');
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const url = process.env.DASHBOARD_URL;
const artifacts = process.env.ARTIFACTS_DIR;
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function check(condition, what, detail) {
  if (!condition) throw new Error('FAILED: ' + what + (detail === undefined ? '' : ': ' + JSON.stringify(detail)));
  console.log('ok: ' + what);
}

// A browser with its own fresh profile directory (Playwright passes it as --user-data-dir).
async function open(name, options, address) {
  const context = await chromium.launchPersistentContext(path.join(process.env.PROFILE_ROOT, name), {
    executablePath: process.env.CHROMIUM,
    headless: true,
    // The demo's listener has a certificate from the demo's own CA, which this fresh
    // profile does not trust; the test is about the page, TLS is tested elsewhere.
    ignoreHTTPSErrors: true,
    args: ARGS,
    ...options,
  });
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text() + ' at ' + m.location().url); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('requestfailed', (r) => problems.push('request failed: ' + r.url()));
  page.on('response', (r) => { if (r.status() >= 400) problems.push('HTTP ' + r.status() + ': ' + r.url()); });
  // Nothing may be fetched from anywhere but the dashboard's own origin.
  const target = address || url;
  const origin = new URL(target).origin;
  page.on('request', (r) => { if (!r.url().startsWith(origin)) problems.push('foreign request: ' + r.url()); });
  await page.goto(target, { waitUntil: 'load' });
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 30000 });
  return { context, page, problems };
}

async function laptop() {
  const { context, page, problems } = await open('laptop', { viewport: { width: 1366, height: 900 } });

  // Members, their keys and the registry version.
  const members = await page.locator('#members-table').innerText();
  for (const id of ['colombo', 'abu-dhabi', 'midwa']) check(members.includes(id), 'member ' + id + ' is listed');
  check(await page.locator('#members-table code').count() >= 4, 'signing keys are listed');
  check(/registry version \d+/.test(await page.locator('#members-note').innerText()), 'the registry version is shown');

  // The log: checkpoint and witnesses.
  const log = await page.locator('#log').innerText();
  check(/Tree size\s+\d+/.test(log), 'the latest checkpoint\'s tree size is shown', log.slice(0, 200));
  check(await page.locator('#log-witnesses tbody tr').count() === 3, 'the three witnesses are listed');

  check((await page.locator('#coherence-note').innerText()).startsWith('Latest report: number '), 'the latest coherence report is shown');
  check(await page.locator('#report-next').isDisabled(), 'there is no report after the latest');

  // The conflict, both sides with their sources.
  const conflict = page.locator('.conflict', { hasText: 'MIG_STOCK · WLD · 2020' });
  check(await conflict.count() === 1, 'the MIG_STOCK WLD 2020 conflict is shown');
  const sides = await conflict.locator('.side').allInnerTexts();
  const colomboSide = sides.find((s) => s.includes('(colombo)'));
  const abuDhabiSide = sides.find((s) => s.includes('(abu-dhabi)'));
  check(colomboSide && colomboSide.includes('275 million'), 'colombo\'s side says 275 million', sides);
  check(abuDhabiSide && abuDhabiSide.includes('281 million'), 'abu-dhabi\'s side says 281 million', sides);
  check(abuDhabiSide.includes('UN DESA International Migrant Stock 2020') &&
    colomboSide.includes('UN DESA International Migrant Stock 2024'), 'each side names its source', sides);
  check(sides.every((s) => /signed statement [0-9a-f]{12}… · log index \d+/.test(s)), 'each side names its signed statement and log index', sides);

  // The revision, old and new value with their sources.
  const revision = page.locator('.revision', { hasText: 'REMIT_INFLOW · LMC_AGG · 2023' });
  check(await revision.count() === 1, 'the REMIT_INFLOW LMC_AGG 2023 revision is shown');
  const [before, after] = await revision.locator('.side').allInnerTexts();
  check(before.includes('669 bn') && before.includes('World Bank/KNOMAD June 2024 brief'), 'the revision starts from 669 bn, June 2024 brief', before);
  check(after.includes('647 bn') && /World Bank\/KNOMAD.*Dec/.test(after), 'the revision ends at 647 bn, December 2024 brief', after);

  // Coverage matrix and GCM objectives.
  const matrix = page.locator('#coverage-matrix');
  check(await matrix.locator('tbody tr').count() === 3, 'the coverage matrix has a row per publishing member');
  check(await matrix.locator('thead th').count() === 11, 'and a column per catalogue indicator');
  const midwa = await matrix.locator('tbody tr', { hasText: 'midwa' }).innerText();
  check(!/\d+ obs/.test(midwa), 'midwa, which reports no figure, shows only gaps', midwa);
  const colombo = await matrix.locator('tbody tr', { hasText: 'colombo' }).innerText();
  check(/\d+ obs/.test(colombo), 'colombo shows what it reports', colombo);
  check((await page.locator('#gcm-table').innerText()).includes('6, 18, 20'), 'GCM objectives addressed are shown');

  // The Arabic summary, right to left.
  const card = page.locator('.policy[data-document*="abu-dhabi"]');
  check(await card.count() === 1, 'the Abu Dhabi Dialogue policy summary is shown');
  const languages = await card.locator('select.lang option').allTextContents();
  check(['ar', 'en', 'fr'].every((l) => languages.includes(l)), 'its languages are offered', languages);
  await card.locator('select.lang').selectOption('ar');
  const summary = card.locator('.policy-summary');
  check(await summary.getAttribute('dir') === 'rtl' && await summary.getAttribute('lang') === 'ar', 'the Arabic summary has dir=rtl lang=ar');
  check(await summary.evaluate((n) => getComputedStyle(n).direction) === 'rtl', 'the Arabic summary is laid out right to left');
  check(/[\u0600-\u06FF]/.test(await summary.innerText()), 'the Arabic summary shows Arabic text');
  check(await card.locator('.policy-title').getAttribute('dir') === 'rtl', 'the Arabic title is right to left');
  await page.screenshot({ path: path.join(artifacts, 'dashboard-laptop.png'), fullPage: true });

  // A chart point's provenance, on click, matching what the API says about that point.
  await page.locator('#indicator-select').selectOption('MIG_STOCK');
  await page.waitForSelector('#chart circle.point');
  const point = page.locator('#chart circle.point[data-member="abu-dhabi"][data-ref-area="WLD"][data-period="2020"]');
  check(await point.count() === 1, 'the chart draws abu-dhabi\'s MIG_STOCK WLD 2020 point');
  await point.click();
  const box = page.locator('#provenance');
  await box.waitFor({ state: 'visible' });
  const digest = await box.locator('.prov-digest').innerText();
  const logIndex = Number(await box.locator('.prov-log-index').innerText());
  const series = await (await page.request.get(new URL('api/series?indicator=MIG_STOCK', url).href)).json();
  const expected = series.points.find((p) => p.provenance.node_id === 'abu-dhabi' &&
    p.observation.ref_area === 'WLD' && p.observation.time_period === '2020');
  check(expected && digest === expected.provenance.statement_digest && logIndex === expected.provenance.log_index,
    'the clicked point shows its member, signed statement and log index', { digest, logIndex });
  check((await box.locator('.prov-member').innerText()).includes('abu-dhabi'), 'the provenance names the member');
  await page.screenshot({ path: path.join(artifacts, 'dashboard-laptop-provenance.png'), fullPage: false });

  check(problems.length === 0, 'no script error, no failed or foreign request', problems);
  await context.close();
}

async function phone() {
  const { context, page, problems } = await open('phone', {
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const widths = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
    body: document.body.scrollWidth,
  }));
  check(widths.scroll <= widths.client && widths.body <= widths.client, 'no horizontal overflow on a 390 px phone', widths);
  await page.screenshot({ path: path.join(artifacts, 'dashboard-phone.png'), fullPage: true });
  check(problems.length === 0, 'no script error on the phone', problems);
  await context.close();
}

// A node's dashboard: the same report and members from its mirror, and its own witness view.
async function node() {
  const { context, page, problems } = await open('node', { viewport: { width: 1024, height: 800 } },
    process.env.NODE_DASHBOARD_URL);
  check((await page.locator('#overview').innerText()).includes('Served by the node colombo'), 'the node says it serves the page');
  const sides = await page.locator('.conflict', { hasText: 'MIG_STOCK · WLD · 2020' }).locator('.side').allInnerTexts();
  check(sides.some((t) => t.includes('275 million')) && sides.some((t) => t.includes('281 million')),
    'the node shows the same conflict from its mirror', sides);
  check((await page.locator('#members-table').innerText()).includes('abu-dhabi'), 'the node lists the members');
  check(await page.locator('.policy[data-document*="abu-dhabi"]').count() === 1, 'the node shows the mirrored policy summaries');
  check((await page.locator('#log-viewpoint').innerText()).includes('colombo'), 'the node shows its own view of the log');
  const witness = await page.locator('#log-witnesses tbody').innerText();
  check(witness.includes('trusts the checkpoint of tree size'), 'the node shows its witness state', witness);
  await page.screenshot({ path: path.join(artifacts, 'dashboard-node.png'), fullPage: false });
  check(problems.length === 0, 'no script error on the node', problems);
  await context.close();
}

// After the test published a policy summary whose texts are markup: shown as text, not run.
async function markup() {
  const { context, page, problems } = await open('markup', { viewport: { width: 1366, height: 900 } });
  const card = page.locator('.policy[data-document="regions/colombo/policies/markup-is-text"]');
  check(await card.count() === 1, 'the markup policy summary is listed');
  const title = await card.locator('.policy-title').innerText();
  check(title.startsWith('<img src=x onerror=') && title.includes('<script>') && title.endsWith(' & co'), 'its title is shown as the text it is', title);
  check((await card.locator('.policy-summary').innerText()).startsWith('<b>not bold</b>'), 'its summary is shown as text');
  check(await card.locator('img, script, b, a[href^="javascript"]').count() === 0, 'no element was made from the text');
  check(await page.evaluate(() => document.body.dataset.injected) === undefined, 'no script from the text ran');
  check(problems.length === 0, 'no script error, no failed or foreign request', problems);
  await context.close();
}

(async () => {
  if (process.env.CHECKS === 'markup') {
    await markup();
    console.log('dashboard markup checks passed');
    return;
  }
  await laptop();
  await phone();
  await node();
  console.log('dashboard browser checks passed');
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
