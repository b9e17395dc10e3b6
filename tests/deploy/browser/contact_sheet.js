// Headless Chromium opens mj_contact_sheet's page (a local file) and screenshots it.
//
//   node contact_sheet.js '<json config>'   (config: url, expectedImages, and harness.js's keys)
//
// Checks that the page shows the expected number of images, each loaded (natural size > 0) with
// its prompt and a link to the full image. Output and exit code: see harness.js.
'use strict';

const { cfg, check, shot, launch, errorText, run } = require('./harness');

async function main() {
  const context = await launch({ width: 1200, height: 900 });
  try {
    const page = context.pages()[0] || (await context.newPage());
    await page.goto(cfg.url, { waitUntil: 'load', timeout: 30000 });
    const figures = await page.evaluate(() => Array.from(document.querySelectorAll('figure')).map((f) => {
      const img = f.querySelector('img');
      const link = f.querySelector('a[href]');
      const prompt = f.querySelector('.prompt');
      return {
        src: img ? img.getAttribute('src') : null,
        loaded: Boolean(img && img.complete && img.naturalWidth > 0 && img.naturalHeight > 0),
        prompt: prompt ? prompt.textContent.trim() : '',
        href: link ? link.getAttribute('href') : null,
      };
    }));
    check(`the contact sheet shows ${cfg.expectedImages} images, each loaded, with its prompt and link`,
      figures.length === cfg.expectedImages && figures.every((f) => f.loaded && f.prompt && f.href === f.src),
      figures);
    await shot(page, '08-contact-sheet', { fullPage: true });
  } catch (err) {
    check('contact sheet opened', false, errorText(err));
  } finally {
    await context.close();
  }
}

run(main);
