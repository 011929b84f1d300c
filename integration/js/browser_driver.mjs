// Drives Debian's chromium (headless, through puppeteer-core) for
// integration/test_demo_browser.py. Commands come one JSON object a line on
// stdin; each is answered with one {"ev":"reply",...} line on stdout. The
// page's console and errors are reported as {"ev":"console"} lines.
//   node browser_driver.mjs USER_DATA_DIR
import readline from 'node:readline';

import puppeteer from 'puppeteer-core';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const userDataDir = process.argv[2];
let browser = null;
let page = null;

const commands = {
  async open({ url }) {
    browser = await puppeteer.launch({
      executablePath: process.env.PUSH_CHROMIUM || '/usr/bin/chromium',
      headless: true,
      // The machine's network is closed: without the background-networking
      // flags Chromium keeps trying to reach its own services.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        `--user-data-dir=${userDataDir}`],
      defaultViewport: { width: 1100, height: 720 },
    });
    page = await browser.newPage();
    page.on('console', (m) => out({ ev: 'console', type: m.type(), text: m.text() }));
    page.on('pageerror', (e) => out({ ev: 'console', type: 'pageerror', text: String(e) }));
    await page.goto(url, { waitUntil: 'load' });
    // Every state change, kept in the page, so that none is missed between polls.
    await page.waitForFunction(() => window.pushClient !== undefined, { timeout: 20000 });
    await page.evaluate(() => {
      window.__states = [window.pushClient.state];
      window.pushClient.on('state', (s) => window.__states.push(s.state + (s.code ? ':' + s.code : '')));
    });
    return {};
  },
  async states() {
    return { states: await page.evaluate(() => window.__states) };
  },
  async waitState({ state, after = 0, timeout = 30000 }) {
    await page.waitForFunction((st, n) => window.__states.slice(n).includes(st), { timeout, polling: 50 },
      state, after);
    return { states: await page.evaluate(() => window.__states) };
  },
  async text({ selector }) {
    return { text: await page.$eval(selector, (e) => e.textContent) };
  },
  async waitText({ selector, prefix, timeout = 30000 }) {
    await page.waitForFunction((s, p) => {
      const e = document.querySelector(s);
      return e && e.textContent.startsWith(p);
    }, { timeout, polling: 50 }, selector, prefix);
    return { text: await page.$eval(selector, (e) => e.textContent) };
  },
  async waitCount({ count, timeout = 30000 }) {
    await page.waitForFunction((n) => document.querySelectorAll('#messages li').length >= n,
      { timeout, polling: 50 }, count);
    return commands.messages();
  },
  async messages() {
    // Oldest first (the page shows the newest on top).
    const rows = await page.$$eval('#messages li', (lis) => lis.map((li) => ({
      id: li.dataset.id,
      time: li.querySelector('.time').textContent,
      topic: li.querySelector('.topic').textContent,
      data: li.querySelector('.data').textContent,
    })));
    return { messages: rows.reverse() };
  },
  async fill({ selector, value }) {
    await page.$eval(selector, (e, v) => {
      if ('value' in e) e.value = v;
      else e.textContent = v;
    }, value);
    return {};
  },
  async select({ selector, value }) {
    await page.select(selector, value);
    return {};
  },
  async click({ selector }) {
    await page.click(selector);
    return {};
  },
  async screenshot({ path }) {
    await page.screenshot({ path, fullPage: true });
    return { path };
  },
  async quit() {
    if (browser) await browser.close();
    browser = null;
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => {
  const cmd = JSON.parse(line);
  chain = chain.then(async () => {
    try {
      out({ ev: 'reply', cmd: cmd.cmd, ...(await commands[cmd.cmd](cmd)) });
    } catch (e) {
      out({ ev: 'reply', cmd: cmd.cmd, error: String(e && e.stack ? e.stack : e) });
    }
  });
});
rl.on('close', () => {
  chain.then(async () => {
    if (browser) await browser.close();
    process.exit(0);
  });
});
