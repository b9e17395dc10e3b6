// What the browser checks share (run by scripts/deploy/checks.py: run_browser_script).
//
// Each check script gets one JSON config as its argument (always chromium, userDataDir and
// artifacts, plus its own keys), records named checks with check(), saves screenshots with
// shot(), and hands its main function to run(), which prints one line "RESULT {json}" with
// {checks: {name: {ok, detail}}, screenshots: [...]} and exits 0 when the checks ran (pass or
// fail), 2 when the browser itself could not be driven.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const cfg = JSON.parse(process.argv[2]);
const checks = {};
const screenshots = [];

function check(name, ok, detail) {
  checks[name] = { ok: Boolean(ok), detail: detail === undefined ? null : detail };
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${ok ? '' : ': ' + JSON.stringify(detail)}`);
}

async function shot(page, name, opts = {}) {
  const file = path.join(cfg.artifacts, `${name}.png`);
  await page.screenshot({ path: file, ...opts });
  screenshots.push(file);
  return file;
}

// Debian's Chromium (cfg.chromium) through playwright-core, no browser download, with the flags
// this machine needs (closed network, root, no GPU); a fresh profile every run.
async function launch(viewport) {
  fs.mkdirSync(cfg.artifacts, { recursive: true });
  fs.mkdirSync(cfg.userDataDir, { recursive: true });
  return chromium.launchPersistentContext(cfg.userDataDir, {
    executablePath: cfg.chromium,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport,
  });
}

function errorText(err) {
  return String(err && err.stack ? err.stack : err).slice(0, 1500);
}

function run(main) {
  main()
    .then(() => {
      console.log('RESULT ' + JSON.stringify({ checks, screenshots }));
      process.exit(0);
    })
    .catch((err) => {
      console.error(err);
      console.log('RESULT ' + JSON.stringify({ checks, screenshots, error: String(err) }));
      process.exit(2);
    });
}

module.exports = { cfg, check, shot, launch, errorText, run };
