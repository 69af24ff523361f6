// Loads one page of ordership in headless Chromium (Debian's) with every request to anything but
// this machine blocked, waits until the given texts are visible, and prints what it saw as JSON:
// the title, the texts found, the page's visible text, the requests it blocked and the errors.
//
//   node page.mjs <url> [text | click=Label …]   (CHROMIUM=/path overrides /usr/bin/chromium)
//
// The steps run in order: a text must become visible, `click=Label` clicks the button so named.
// It exits non-zero when a text does not appear within the timeout. This is the browser harness
// of the Rust tests (tests/e2e/browser.rs); later pages use it the same way.
import { chromium } from 'playwright-core';

const [url, ...expected] = process.argv.slice(2);
if (!url) {
  console.error('usage: node page.mjs <url> [text …]');
  process.exit(2);
}
const loopback = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  // No sandbox as root; and none of Chromium's own calls home, which a closed network refuses.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const report = { url, title: null, found: [], missing: [], blocked: [], errors: [], text: '' };
try {
  const context = await browser.newContext();
  await context.route('**/*', (route) => {
    const target = route.request().url();
    const { protocol, hostname } = new URL(target);
    if (protocol === 'data:' || protocol === 'blob:' || loopback.has(hostname)) {
      return route.continue();
    }
    report.blocked.push(target);
    return route.abort('blockedbyclient');
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => report.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') report.errors.push(m.text()); });
  await page.goto(url, { waitUntil: 'load' });
  // In order: each text must become visible; `click=Label` clicks the button of that name.
  for (const step of expected) {
    if (step.startsWith('click=')) {
      await page.getByRole('button', { name: step.slice(6) }).click({ timeout: 30_000 });
      continue;
    }
    try {
      await page.getByText(step, { exact: false }).first().waitFor({ state: 'visible', timeout: 30_000 });
      report.found.push(step);
    } catch {
      report.missing.push(step);
      break;
    }
  }
  report.title = await page.title();
  report.text = await page.evaluate(() => document.body.innerText);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(report.missing.length === 0 ? 0 : 1);
