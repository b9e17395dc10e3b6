// Headless Chromium check of a live Airflow deployment, run by scripts/deploy_test.py.
//
//   node check_ui.js '<json config>'   (config: baseUrl, username, password, dagId, runId, linkTask,
//                                        expectedLink, connType, expectedLabels, authStyle, and
//                                        harness.js's keys)
//
// Logs into the UI with the simple auth manager's form, opens the "Add Connection" form for our
// connection type and looks for our fields, opens the finished imagine task instance and follows
// its "Midjourney image" extra link. Screenshots go to config.artifacts. Output and exit code: see
// harness.js.
'use strict';

const { cfg, check, shot, launch, errorText, run } = require('./harness');

async function settle(page) {
  // Let the page finish its first requests (the UI keeps polling only while runs are active).
  await page.waitForLoadState('networkidle', { timeout: 10000 }).catch(() => {});
}

async function main() {
  const context = await launch({ width: 1400, height: 1000 });
  context.setDefaultTimeout(30000);
  const page = context.pages()[0] || (await context.newPage());
  const base = cfg.baseUrl.replace(/\/$/, '');
  try {
    // 1. Log in through the simple auth manager's form.
    await page.goto(base + '/');
    await page.waitForURL(/\/auth\/login/);
    await page.getByLabel('Username').fill(cfg.username);
    await page.getByLabel('Password').fill(cfg.password);
    await shot(page, '01-login');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => !u.pathname.startsWith('/auth'));
    // Wait for the translated navigation (exact names: before i18n loads it reads "nav.dags").
    await page.getByRole('link', { name: 'Dags', exact: true }).first().waitFor();
    await settle(page);
    check('logged into the UI', true, page.url());
    await shot(page, '02-home');

    // 2. The connection form for our connection type shows our fields.
    await page.goto(base + '/connections');
    await page.getByRole('button', { name: 'Add Connection' }).click();
    const dialog = page.getByRole('dialog');
    const typeBox = dialog.getByRole('combobox', { name: 'Connection Type' });
    await typeBox.click();
    await typeBox.fill(cfg.connType);
    const options = await page.getByRole('option').allInnerTexts();
    await page.getByRole('option', { name: /midjourney/i }).first().click();
    check(`connection type '${cfg.connType}' is offered`, options.some((o) => /midjourney/i.test(o)), options);
    // Standard fields (relabelled host/password) show first; our extra fields live in a collapsed
    // "Extra Fields" section (the sections are an accordion: opening one closes the other).
    const visibleLabels = async () => {
      const out = [];
      for (const el of await dialog.locator('label').all()) {
        if (await el.isVisible()) out.push((await el.innerText()).replace(/\s*\*\s*$/, '').trim());
      }
      return out;
    };
    await dialog.getByText('Base URL', { exact: true }).first().waitFor({ state: 'visible' });
    const seen = new Set(await visibleLabels());
    await shot(page, '03-connection-form-standard-fields');
    const extra = dialog.getByRole('button', { name: 'Extra Fields', exact: true });
    if (await extra.count()) await extra.click();
    await dialog.getByText('Speed mode', { exact: false }).first().waitFor({ state: 'visible' });
    for (const l of await visibleLabels()) seen.add(l);
    await shot(page, '04-connection-form-extra-fields');
    const missing = cfg.expectedLabels.filter((want) => ![...seen].some((l) => l === want));
    check('connection form shows our fields: ' + cfg.expectedLabels.join(', '), missing.length === 0,
      { missing, visible: [...seen] });
    // The auth style shows its default selected. Under a name Airflow masks as a secret (the old
    // 'auth_header') the select showed "Select Value" instead.
    if (cfg.authStyle) {
      const field = dialog.locator('div')
        .filter({ has: page.getByText(cfg.authStyle.label, { exact: true }) })
        .filter({ has: page.getByRole('combobox') })
        .last();
      // The combobox is the select's search input; the chosen value (or the "Select Value"
      // placeholder) is the text of its nearest ancestor that has any.
      const shown = await field.getByRole('combobox').first().evaluate((el) => {
        for (let n = el.parentElement; n; n = n.parentElement) {
          const text = (n.innerText || '').trim();
          if (text) return text;
        }
        return '';
      });
      check(`connection form shows '${cfg.authStyle.default}' preselected for ${cfg.authStyle.label}`,
        shown.toLowerCase() === cfg.authStyle.default, { shown });
    }
    await page.keyboard.press('Escape');

    // 3. The finished imagine task instance has the "Midjourney image" extra link.
    if (cfg.linkTask && cfg.runId) {
      const tiUrl = `${base}/dags/${encodeURIComponent(cfg.dagId)}/runs/${encodeURIComponent(cfg.runId)}` +
        `/tasks/${encodeURIComponent(cfg.linkTask)}`;
      await page.goto(tiUrl);
      await page.getByText('Success', { exact: true }).first().waitFor();
      await settle(page);
      await shot(page, '05-task-instance-logs');
      await page.getByRole('link', { name: 'Details', exact: true }).click();
      const link = page.getByRole('link', { name: 'Midjourney image', exact: true });
      await link.waitFor({ state: 'visible' });
      const href = await link.getAttribute('href');
      await link.scrollIntoViewIfNeeded();
      await shot(page, '06-task-instance-extra-link');
      check("task instance shows the 'Midjourney image' extra link", Boolean(href), href);
      check('the extra link points at the image', Boolean(href) && (!cfg.expectedLink || href === cfg.expectedLink),
        { href, expected: cfg.expectedLink });
      // Follow it, as a user clicking it would (it opens in a new tab).
      const [tab] = await Promise.all([context.waitForEvent('page'), link.click()]);
      await tab.waitForLoadState('load');
      const img = await tab.evaluate(() => {
        const i = document.querySelector('img');
        return i ? { w: i.naturalWidth, h: i.naturalHeight } : null;
      });
      const resp = await context.request.get(href);
      const status = resp.status();
      const type = resp.headers()['content-type'];
      check('the extra link opens a PNG image', tab.url() === href && status === 200 && /image\/png/.test(type || '') &&
        img && img.w > 0 && img.h > 0, { url: tab.url(), status, type, img });
      await shot(tab, '07-midjourney-image');
      await tab.close();
    }
  } catch (err) {
    check('UI walk-through completed', false, errorText(err));
    await shot(page, '99-failure').catch(() => {});
  } finally {
    await context.close();
  }
}

run(main);
