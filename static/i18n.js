/* flashsale dashboard: its words in English and Chinese (简体中文).
 *
 * The language is the one the visitor chose with the toggle (kept in localStorage),
 * else the first of the browser's languages (navigator.languages) that is English or
 * Chinese, else English.  Only a choice is stored: following the browser writes nothing.
 *
 * index.html marks its words with data-i18n="key" (the element's text) and
 * data-i18n-attr="attribute=key,..." (title, aria-label, placeholder); app.js asks t().
 * Its English text stays in the page, so the page reads the same before this runs.
 * What the server says is never translated: sale names, error codes and error messages
 * stay as sent (the error code is the API's contract, the message its English gloss).
 */
'use strict';

const I18N_KEY = 'flashsale.lang';

/* Every key is in both tables (tests/e2e checks the page shows no English in Chinese).
 * A value is a string, or a function of the values it mentions. */
const I18N_MESSAGES = {
  en: {
    'title': 'flashsale · live',
    'lang.other': '中文',
    'lang.other.tag': 'zh-CN',
    'lang.switch': 'Switch to Chinese (切换到中文)',
    'skip': 'Skip to “Grab a ticket”',
    'brand.sub': 'live',
    'chip.inventory': 'inventory', 'chip.inventory.title': 'inventory strategy',
    'chip.store': 'store', 'chip.store.title': 'storage backend',
    'chip.durability': 'durability', 'chip.durability.title': 'SQLite durability',
    'chip.up': 'up', 'chip.up.title': 'server uptime',
    'conn.connecting': 'connecting…', 'conn.live': 'live', 'conn.offline': 'disconnected, retrying…',
    'banner.offline': 'Disconnected', 'banner.retrying': '— retrying…',
    'banner.unsafe': 'Unsafe inventory strategy.',
    'banner.unsafe.why': 'This server checks stock and writes it back in two steps, so a crowd can buy more than there is. Watch the oversold counters.',
    'sales': 'Sales',
    'sales.empty': 'No sales yet. Unlock the admin panel to create one.',
    'sales.count': (n, open) => `${n} ${n === 1 ? 'sale' : 'sales'}, ${open} open`,
    'service': 'Service', 'service.sub': 'rates and latencies of the last complete second',
    'tile.requests': 'requests/s', 'tile.orders': 'orders/s', 'tile.soldout': 'sold out/s',
    'tile.overloaded': '503/s', 'tile.queue': 'queue depth', 'tile.p50': 'latency p50',
    'tile.p99': 'latency p99', 'tile.units': 'units sold',
    'chart.requests': 'Requests/s', 'chart.p99': 'Latency p99', 'chart.lastMinute': '· last minute',
    'chart.requests.aria': 'requests per second over the last minute',
    'chart.p99.aria': 'p99 purchase latency over the last minute',
    'legend.requests': 'requests', 'legend.orders': 'orders',
    'chart.collecting': 'collecting…', 'chart.ago': '−60 s', 'chart.now': 'now',
    'buy': 'Grab a ticket', 'buy.user': 'User id', 'buy.newUser': 'New id',
    'buy.newUser.title': 'pick another random user id', 'buy.sale': 'Sale', 'buy.quantity': 'Quantity',
    'buy.submit': 'Buy now', 'buy.busy': 'Buying…',
    'admin': 'Admin', 'admin.token': 'Admin token', 'admin.token.placeholder': 'bearer token',
    'admin.unlock': 'Unlock',
    'admin.hint.before': 'The token the server was started with (',
    'admin.hint.after': ') unlocks creating, resetting and auditing sales. It is kept for this tab only.',
    'admin.unlocked': 'Unlocked', 'admin.unlocked.where': 'for this tab only (sessionStorage).',
    'admin.forget': 'Forget token', 'admin.actions': 'Admin actions',
    'create': 'Create a sale', 'create.name': 'Name', 'create.name.placeholder': 'Concert tickets',
    'create.stock': 'Stock', 'create.limit': 'Per-user limit', 'create.window': 'Pay within',
    'create.window.unit': '(s, 0 = final at once)', 'create.starts': 'Starts', 'create.starts.empty': '(empty = now)',
    'create.ends': 'Ends', 'create.ends.empty': '(empty = never)', 'create.submit': 'Create sale',
    'tools': 'Reset or audit a sale', 'tools.sale': 'Sale', 'tools.reset': 'Reset stock',
    'tools.reset.title': 'back to full stock; forgets its orders', 'tools.audit': 'Run audit',
    'foot.waiting': 'waiting for the first update…', 'foot.polls': 'polls', 'foot.twice': 'twice a second',
    'foot.openapi': 'API (OpenAPI)',
    'status.upcoming': 'upcoming', 'status.open': 'open', 'status.sold_out': 'sold out', 'status.ended': 'ended',
    'order.pending': 'pending', 'order.confirmed': 'confirmed', 'order.paid': 'paid', 'order.created': 'created',
    'card.left': 'left', 'card.sold': 'sold', 'card.limit': 'limit', 'card.perUser': (n) => `${n} / user`,
    'card.pending': 'pending', 'card.paid': 'paid', 'card.expired': 'expired', 'card.cancelled': 'cancelled',
    'card.oversold': 'oversold', 'card.oversold.aria': (n) => (n ? `${n} units oversold` : 'nothing oversold'),
    'card.bar.text': (left, total) => `${left} of ${total} left`, 'card.bar.aria': (name) => `stock of ${name}`,
    'option': (id, name, left, status) => `#${id} ${name} · ${left} left${status ? ` (${status})` : ''}`,
    'when.opensIn': (span, at) => `opens in ${span} (${at})`, 'when.opened': (at) => `opened ${at}`,
    'when.closesIn': (span, at) => `closes in ${span} (${at})`, 'when.closed': (at) => `closed ${at}`,
    'when.noEnd': 'no closing time', 'when.payWithin': (span) => `pay within ${span}`,
    'dur.d': (d, h) => `${d} d ${h} h`, 'dur.h': (h, m) => `${h} h ${m} min`, 'dur.m': (m) => `${m} min`,
    'dur.ms': (m, s) => `${m} min ${s} s`, 'dur.s': (s) => `${s} s`,
    'stats.total': (n) => `${n} total`, 'stats.overloaded': (n) => `${n} overloaded`,
    'stats.rateLimited': (n) => ` · ${n} rate-limited`, 'stats.queueOf': (n) => `of ${n}`,
    'stats.toStore': (n) => ` · ${n} to store`, 'stats.perPurchase': 'per purchase',
    'stats.noPurchases': 'no purchases', 'stats.overLimit': (n) => `${n} over limit`,
    'updated': (at) => `updated ${at}`, 'stale': (ago) => `stale: ${ago}`,
    'offline.ago': (span) => `last update ${span} ago`, 'offline.noData': 'no data yet',
    'offline.detail': (ago, n) => `(${ago}; ${n} failed ${n === 1 ? 'try' : 'tries'})`,
    'error.sold_out': 'Sold out', 'error.limit_exceeded': 'Per-user limit reached',
    'error.sale_not_started': 'Sale not open yet', 'error.sale_ended': 'Sale has ended',
    'error.overloaded': 'Server overloaded', 'error.rate_limited': 'Too many requests',
    'error.invalid_request': 'Invalid request', 'error.unsupported_media_type': 'Unsupported media type',
    'error.not_found': 'Not found', 'error.unauthorized': 'Token rejected',
    'error.network': 'No answer from the server',
    'error.timeout': 'the request timed out', 'error.unreachable': 'the server could not be reached',
    'result.retryAfter': (s) => `retry after ${s} s`, 'result.at': (at) => `at ${at}`,
    'buy.order': 'Order',
    'buy.done': (q, name, user, ms) => `${q} × ${name} for ${user} · answered in ${ms}`,
    'buy.payBy': (at) => `to be paid by ${at}, or it is released`,
    'buy.needUser': 'Enter a user id.', 'buy.noSale': 'There is no sale to buy from yet.',
    'buy.needQuantity': 'Quantity must be 1 or more.', 'buy.saleN': (id) => `sale #${id}`,
    'create.needName': 'Give the sale a name.', 'create.needStock': 'Stock must be 1 or more.',
    'create.endAfterStart': 'The end must come after the start.',
    'create.done': (id, name) => `Created sale #${id} “${name}”`,
    'create.what': (units, limit, status) => `${units} units, ${limit} per user, ${status}`,
    'reset.none': 'No sale to reset.', 'reset.done': (id, name) => `Reset sale #${id} “${name}”`,
    'reset.what': (left, total) => `${left} / ${total} left again`,
    'audit.none': 'No sale to audit.', 'audit.done': (id, name) => `Audit of sale #${id} “${name}”`,
    'audit.consistent': 'consistent: ', 'yes': 'yes', 'no': 'no',
    'audit.stock-total': 'stock total', 'audit.stock-left': 'stock left', 'audit.units-sold': 'units sold',
    'audit.orders': 'orders', 'audit.oversold': 'oversold', 'audit.users-over-limit': 'users over limit',
    'audit.memory-agrees': 'memory agrees', 'audit.in-flight': 'in flight', 'audit.inventory': 'inventory',
  },
  zh: {
    'title': 'flashsale · 实时',
    'lang.other': 'English',
    'lang.other.tag': 'en',
    'lang.switch': '切换到英文 (Switch to English)',
    'skip': '跳到“抢购”',
    'brand.sub': '实时',
    'chip.inventory': '库存策略', 'chip.inventory.title': '库存扣减策略',
    'chip.store': '存储', 'chip.store.title': '存储后端',
    'chip.durability': '持久性', 'chip.durability.title': 'SQLite 持久性级别',
    'chip.up': '已运行', 'chip.up.title': '服务器运行时长',
    'conn.connecting': '正在连接…', 'conn.live': '在线', 'conn.offline': '已断开，正在重试…',
    'banner.offline': '连接已断开', 'banner.retrying': '— 正在重试…',
    'banner.unsafe': '不安全的库存策略。',
    'banner.unsafe.why': '此服务器分两步检查库存、再写回库存，因此抢购人群可能买走比实际更多的商品。请留意超卖计数。',
    'sales': '秒杀活动',
    'sales.empty': '还没有活动。解锁管理面板即可创建。',
    'sales.count': (n, open) => `${n} 个活动，${open} 个进行中`,
    'service': '服务', 'service.sub': '最近一个完整秒内的速率与延迟',
    'tile.requests': '请求/秒', 'tile.orders': '订单/秒', 'tile.soldout': '售罄/秒',
    'tile.overloaded': '503/秒', 'tile.queue': '队列深度', 'tile.p50': '延迟 p50',
    'tile.p99': '延迟 p99', 'tile.units': '已售件数',
    'chart.requests': '请求/秒', 'chart.p99': '延迟 p99', 'chart.lastMinute': '· 最近一分钟',
    'chart.requests.aria': '最近一分钟每秒请求数',
    'chart.p99.aria': '最近一分钟购买延迟 p99',
    'legend.requests': '请求', 'legend.orders': '订单',
    'chart.collecting': '正在采集…', 'chart.ago': '−60 秒', 'chart.now': '现在',
    'buy': '抢购', 'buy.user': '用户 ID', 'buy.newUser': '换一个',
    'buy.newUser.title': '随机换一个用户 ID', 'buy.sale': '活动', 'buy.quantity': '数量',
    'buy.submit': '立即抢购', 'buy.busy': '抢购中…',
    'admin': '管理', 'admin.token': '管理令牌', 'admin.token.placeholder': 'Bearer 令牌',
    'admin.unlock': '解锁',
    'admin.hint.before': '服务器启动时指定的令牌（',
    'admin.hint.after': '）可解锁创建、重置和审计活动。令牌只保存在当前标签页。',
    'admin.unlocked': '已解锁', 'admin.unlocked.where': '仅限当前标签页（sessionStorage）。',
    'admin.forget': '忘记令牌', 'admin.actions': '管理操作',
    'create': '创建活动', 'create.name': '名称', 'create.name.placeholder': '演唱会门票',
    'create.stock': '库存', 'create.limit': '每人限购', 'create.window': '付款期限',
    'create.window.unit': '（秒，0 = 下单即成交）', 'create.starts': '开始', 'create.starts.empty': '（留空 = 立即）',
    'create.ends': '结束', 'create.ends.empty': '（留空 = 不结束）', 'create.submit': '创建活动',
    'tools': '重置或审计活动', 'tools.sale': '活动', 'tools.reset': '重置库存',
    'tools.reset.title': '恢复满库存，并清除该活动的订单', 'tools.audit': '运行审计',
    'foot.waiting': '等待首次更新…', 'foot.polls': '每秒两次轮询', 'foot.twice': '',
    'foot.openapi': 'API 文档 (OpenAPI)',
    'status.upcoming': '未开始', 'status.open': '进行中', 'status.sold_out': '已售罄', 'status.ended': '已结束',
    'order.pending': '待付款', 'order.confirmed': '已成交', 'order.paid': '已付款', 'order.created': '已创建',
    'card.left': '剩余', 'card.sold': '已售', 'card.limit': '限购', 'card.perUser': (n) => `每人 ${n}`,
    'card.pending': '待付款', 'card.paid': '已付款', 'card.expired': '已过期', 'card.cancelled': '已取消',
    'card.oversold': '超卖', 'card.oversold.aria': (n) => (n ? `超卖 ${n} 件` : '没有超卖'),
    'card.bar.text': (left, total) => `剩余 ${left} / ${total}`, 'card.bar.aria': (name) => `${name} 的库存`,
    'option': (id, name, left, status) => `#${id} ${name} · 剩余 ${left}${status ? `（${status}）` : ''}`,
    'when.opensIn': (span, at) => `${span}后开始（${at}）`, 'when.opened': (at) => `${at} 开始`,
    'when.closesIn': (span, at) => `${span}后结束（${at}）`, 'when.closed': (at) => `${at} 已结束`,
    'when.noEnd': '不设结束时间', 'when.payWithin': (span) => `须在 ${span}内付款`,
    'dur.d': (d, h) => `${d} 天 ${h} 小时`, 'dur.h': (h, m) => `${h} 小时 ${m} 分`, 'dur.m': (m) => `${m} 分钟`,
    'dur.ms': (m, s) => `${m} 分 ${s} 秒`, 'dur.s': (s) => `${s} 秒`,
    'stats.total': (n) => `共 ${n}`, 'stats.overloaded': (n) => `过载 ${n}`,
    'stats.rateLimited': (n) => ` · 限流 ${n}`, 'stats.queueOf': (n) => `容量 ${n}`,
    'stats.toStore': (n) => ` · 待写入 ${n}`, 'stats.perPurchase': '每次购买',
    'stats.noPurchases': '暂无购买', 'stats.overLimit': (n) => `超限 ${n}`,
    'updated': (at) => `更新于 ${at}`, 'stale': (ago) => `数据已过时：${ago}`,
    'offline.ago': (span) => `上次更新在 ${span}前`, 'offline.noData': '尚无数据',
    'offline.detail': (ago, n) => `（${ago}；已失败 ${n} 次）`,
    'error.sold_out': '已售罄', 'error.limit_exceeded': '已达每人限购',
    'error.sale_not_started': '活动尚未开始', 'error.sale_ended': '活动已结束',
    'error.overloaded': '服务器过载', 'error.rate_limited': '请求过于频繁',
    'error.invalid_request': '请求无效', 'error.unsupported_media_type': '不支持的媒体类型',
    'error.not_found': '未找到', 'error.unauthorized': '令牌被拒绝',
    'error.network': '服务器没有应答',
    'error.timeout': '请求超时', 'error.unreachable': '无法连接服务器',
    'result.retryAfter': (s) => `${s} 秒后重试`, 'result.at': (at) => `时间 ${at}`,
    'buy.order': '订单',
    'buy.done': (q, name, user, ms) => `${q} × ${name}，用户 ${user} · 用时 ${ms}`,
    'buy.payBy': (at) => `请在 ${at} 前付款，否则订单将被释放`,
    'buy.needUser': '请输入用户 ID。', 'buy.noSale': '还没有可以购买的活动。',
    'buy.needQuantity': '数量至少为 1。', 'buy.saleN': (id) => `活动 #${id}`,
    'create.needName': '请给活动起个名称。', 'create.needStock': '库存至少为 1。',
    'create.endAfterStart': '结束时间必须晚于开始时间。',
    'create.done': (id, name) => `已创建活动 #${id}「${name}」`,
    'create.what': (units, limit, status) => `${units} 件，每人限购 ${limit} 件，${status}`,
    'reset.none': '没有可以重置的活动。', 'reset.done': (id, name) => `已重置活动 #${id}「${name}」`,
    'reset.what': (left, total) => `已恢复为 ${left} / ${total}`,
    'audit.none': '没有可以审计的活动。', 'audit.done': (id, name) => `活动 #${id}「${name}」的审计`,
    'audit.consistent': '一致：', 'yes': '是', 'no': '否',
    'audit.stock-total': '总库存', 'audit.stock-left': '剩余库存', 'audit.units-sold': '已售件数',
    'audit.orders': '订单数', 'audit.oversold': '超卖', 'audit.users-over-limit': '超限用户',
    'audit.memory-agrees': '内存一致', 'audit.in-flight': '处理中', 'audit.inventory': '库存策略',
  },
};

const i18n = { lang: 'en', listeners: [] };

function i18nStored() {
  try { return localStorage.getItem(I18N_KEY); } catch { return null; } // storage may be blocked
}

/* The visitor's choice, else the browser's first English or Chinese language, else English. */
function i18nDetect() {
  const stored = i18nStored();
  if (stored && I18N_MESSAGES[stored]) return stored;
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
  for (const l of langs) {
    const tag = String(l).toLowerCase();
    if (tag === 'zh' || tag.startsWith('zh-')) return 'zh';
    if (tag === 'en' || tag.startsWith('en-')) return 'en';
  }
  return 'en';
}

/* The text of key in the current language; args go to the keys that are functions. */
function t(key, ...args) {
  let v = I18N_MESSAGES[i18n.lang][key];
  if (v === undefined) {
    console.error(`flashsale dashboard: no "${i18n.lang}" text for "${key}"`);
    v = I18N_MESSAGES.en[key] ?? key;
  }
  return typeof v === 'function' ? v(...args) : v;
}

/* The locale for dates and times: Chinese, or the browser's own English (en-GB keeps 24 h). */
function i18nLocale() {
  if (i18n.lang === 'zh') return 'zh-CN';
  const langs = navigator.languages || [];
  return langs.find((l) => /^en(-|$)/i.test(l)) || 'en';
}

function i18nApply(root = document) {
  for (const node of root.querySelectorAll('[data-i18n]')) {
    const v = t(node.dataset.i18n);
    if (node.textContent !== v) node.textContent = v;
  }
  for (const node of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of node.dataset.i18nAttr.split(',')) {
      const [attr, key] = pair.split('=').map((s) => s.trim());
      node.setAttribute(attr, t(key));
    }
  }
}

/* Switches the page to lang; remember = the visitor chose it (stored for next time). */
function i18nSet(lang, remember) {
  if (!I18N_MESSAGES[lang]) lang = 'en';
  i18n.lang = lang;
  if (remember) try { localStorage.setItem(I18N_KEY, lang); } catch { /* not remembered, still switched */ }
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('title');
  i18nApply();
  const toggle = document.querySelector('[data-testid="lang-toggle"]');
  if (toggle) {
    toggle.textContent = t('lang.other');
    toggle.lang = t('lang.other.tag');
    toggle.title = t('lang.switch');
    toggle.dataset.lang = lang;
  }
  for (const fn of i18n.listeners) fn(lang);
}

function i18nOnChange(fn) { i18n.listeners.push(fn); }

function i18nStart() {
  i18nSet(i18nDetect(), false);
  const toggle = document.querySelector('[data-testid="lang-toggle"]');
  if (toggle) toggle.addEventListener('click', () => i18nSet(i18n.lang === 'zh' ? 'en' : 'zh', true));
}
