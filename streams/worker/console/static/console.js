// The operators' console (docs/CONSOLE.md): the live alert board, the figures beside it,
// and the actions operators take. Plain ES2020, no framework, no build step.
//
// Safety rule: every text that comes from the server (alerts, labels, comments, figures)
// is written with textContent / createTextNode / attribute properties, never parsed as
// HTML. The page runs under `script-src 'self'; style-src 'self'`: no inline script, no
// style attributes; colours and widths are set through the CSSOM (el.style.setProperty).
//
// Rendering: one Map fingerprint → entry, one cached row element per fingerprint. Stream
// events only mark fingerprints dirty; one requestAnimationFrame callback then updates
// the dirty rows in place (only the cells whose text changed) and moves only the rows
// whose sort position or filter membership changed.
'use strict';

(() => {
  // ---------------------------------------------------------------- configuration

  const query = new URLSearchParams(window.location.search);
  const WALL = query.has('wall') && query.get('wall') !== '0';
  const VN_OFFSET_MS = 7 * 3600 * 1000; // the province's clock (Asia/Ho_Chi_Minh)
  const FIGURES_EVERY_MS = 30000;
  const ROTATE_EVERY_MS = 15000;
  const MAX_EVENT_IDS_SHOWN = 200;
  const SILENCE_DURATIONS_S = [900, 3600, 14400, 86400];
  const FAMILIES = ['city', 'services', 'security'];
  const SEVERITIES = ['critical', 'warning', 'info'];
  const STATES = ['firing', 'flapping', 'acknowledged', 'silenced', 'resolved'];
  const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
  const STATE_RANK = { firing: 0, flapping: 0, acknowledged: 1, silenced: 2, resolved: 3 };
  // Group labels shown first, in this order, with a translated name.
  const KNOWN_LABELS = [
    'areaServed', 'refDevice', 'organization.name', 'agency', 'source.ip', 'host.name',
    'user.name', 'district', 'station',
  ];

  // ---------------------------------------------------------------- texts

  const TEXTS = {
    vi: {
      'title': 'Trung tâm điều hành — Cảnh báo',
      'lang.switch': 'EN',
      'lang.switch_title': 'Switch to English',
      'theme.switch': 'Nền',
      'theme.switch_title': 'Đổi nền sáng/tối',
      'logout': 'Đăng xuất',
      'family.city': 'Đô thị',
      'family.services': 'Dịch vụ công',
      'family.security': 'An ninh mạng',
      'severity.critical': 'Nghiêm trọng',
      'severity.warning': 'Cảnh báo',
      'severity.info': 'Thông tin',
      'state.firing': 'Đang báo',
      'state.flapping': 'Dao động',
      'state.acknowledged': 'Đã xác nhận',
      'state.silenced': 'Tạm tắt',
      'state.resolved': 'Đã hết',
      'conn.connecting': 'Đang kết nối…',
      'conn.live': 'Trực tuyến',
      'conn.reconnecting': 'Mất kết nối, đang nối lại…',
      'conn.offline': 'Mất kết nối',
      'alerts.heading': 'Cảnh báo',
      'alerts.empty': 'Không có cảnh báo nào.',
      'alerts.count': 'Hiển thị {shown} / {total} cảnh báo',
      'filter.family': 'Nhóm',
      'filter.severity': 'Mức độ',
      'filter.state': 'Trạng thái',
      'filter.district': 'Quận/huyện',
      'filter.text': 'Tìm',
      'filter.text_hint': 'nội dung, nhãn, IP…',
      'filter.all': 'Tất cả',
      'filter.active': 'Chưa hết',
      'filter.clear': 'Bỏ lọc',
      'col.severity': 'Mức độ',
      'col.state': 'Trạng thái',
      'col.family': 'Nhóm',
      'col.alert': 'Cảnh báo',
      'col.value': 'Giá trị / ngưỡng',
      'col.first_seen': 'Bắt đầu',
      'col.changed': 'Thay đổi',
      'col.actor': 'Người xử lý',
      'label.areaServed': 'Quận/huyện',
      'label.refDevice': 'Trạm',
      'label.organization.name': 'Cơ quan',
      'label.agency': 'Cơ quan',
      'label.source.ip': 'IP nguồn',
      'label.host.name': 'Máy',
      'label.user.name': 'Người dùng',
      'label.district': 'Quận/huyện',
      'label.station': 'Trạm',
      'details.heading': 'Chi tiết',
      'details.close': 'Đóng',
      'details.hint': 'Chọn một cảnh báo để xem chi tiết.',
      'details.gone': 'Cảnh báo này đã rời bảng.',
      'details.rule': 'Quy tắc',
      'details.fingerprint': 'Mã cảnh báo',
      'details.alert_state': 'Bản ghi mới nhất',
      'details.flapping': 'dao động',
      'details.value': 'Giá trị',
      'details.threshold': 'Ngưỡng',
      'details.window': 'Cửa sổ',
      'details.starts_at': 'Bắt đầu đợt',
      'details.first_seen': 'Lần đầu thấy',
      'details.changed': 'Thay đổi gần nhất',
      'details.ends_at': 'Kết thúc',
      'details.labels': 'Nhãn',
      'details.evidence': 'Bằng chứng',
      'details.event_ids': 'Mã sự kiện',
      'details.event_ids_more': '… và {n} mã khác',
      'details.acted': 'Người xử lý',
      'details.acked_by': 'Xác nhận bởi',
      'details.silenced_by': 'Tạm tắt bởi',
      'details.silenced_until': 'Tạm tắt đến',
      'details.silence_reason': 'Lý do tạm tắt',
      'details.last_action': 'Thao tác gần nhất',
      'details.comments': 'Ghi chú',
      'details.no_comments': 'Chưa có ghi chú.',
      'details.none': 'Không có',
      'details.other_language': 'English',
      'action.ack': 'Xác nhận',
      'action.silence': 'Tạm tắt',
      'action.unsilence': 'Bật lại',
      'action.comment': 'Gửi ghi chú',
      'action.duration': 'Thời gian',
      'action.reason': 'Lý do (bắt buộc)',
      'action.comment_text': 'Ghi chú',
      'action.sent': 'Đã gửi: {action}. Bảng sẽ cập nhật khi hệ thống ghi nhận.',
      'action.name.ack': 'xác nhận',
      'action.name.silence': 'tạm tắt',
      'action.name.unsilence': 'bật lại',
      'action.name.comment': 'ghi chú',
      'duration.15m': '15 phút',
      'duration.1h': '1 giờ',
      'duration.4h': '4 giờ',
      'duration.24h': '24 giờ',
      'error.reason_required': 'Cần nhập lý do tạm tắt.',
      'error.text_required': 'Cần nhập nội dung ghi chú.',
      'error.network': 'Không gửi được (lỗi mạng)',
      'error.http': 'Máy chủ trả lời {status}',
      'error.session': 'Không tải được phiên đăng nhập; thử lại sau ít giây…',
      'figures.heading': 'Số liệu',
      'figures.empty': 'Chưa có số liệu.',
      'figures.stale': 'Không tải được số liệu',
      'figures.updated': 'cập nhật {time}',
      'panel.aqi_stations': 'VN_AQI theo trạm',
      'panel.aqi_districts': 'VN_AQI theo quận/huyện',
      'panel.water': 'Mực nước',
      'panel.overdue': 'Hồ sơ quá hạn theo cơ quan',
      'panel.failed_logins': 'Đăng nhập thất bại theo cơ quan',
      'band.good': 'Tốt',
      'band.moderate': 'Trung bình',
      'band.poor': 'Kém',
      'band.bad': 'Xấu',
      'band.very_bad': 'Rất xấu',
      'band.hazardous': 'Nguy hại',
      'water.alert': 'báo động',
      'water.danger': 'nguy hiểm',
      'water.status.ok': 'Bình thường',
      'water.status.alert': 'Trên mức báo động',
      'water.status.danger': 'Trên mức nguy hiểm',
      'overdue.unit': 'hồ sơ',
      'failed_logins.unit': 'lần',
    },
    en: {
      'title': 'Operations Centre — Alerts',
      'lang.switch': 'VI',
      'lang.switch_title': 'Chuyển sang tiếng Việt',
      'theme.switch': 'Theme',
      'theme.switch_title': 'Switch light/dark',
      'logout': 'Log out',
      'family.city': 'City',
      'family.services': 'Public services',
      'family.security': 'Cyber security',
      'severity.critical': 'Critical',
      'severity.warning': 'Warning',
      'severity.info': 'Info',
      'state.firing': 'Firing',
      'state.flapping': 'Flapping',
      'state.acknowledged': 'Acknowledged',
      'state.silenced': 'Silenced',
      'state.resolved': 'Resolved',
      'conn.connecting': 'Connecting…',
      'conn.live': 'Live',
      'conn.reconnecting': 'Connection lost, reconnecting…',
      'conn.offline': 'Offline',
      'alerts.heading': 'Alerts',
      'alerts.empty': 'No alerts.',
      'alerts.count': 'Showing {shown} of {total} alerts',
      'filter.family': 'Family',
      'filter.severity': 'Severity',
      'filter.state': 'State',
      'filter.district': 'District',
      'filter.text': 'Search',
      'filter.text_hint': 'summary, labels, IP…',
      'filter.all': 'All',
      'filter.active': 'Not resolved',
      'filter.clear': 'Clear filters',
      'col.severity': 'Severity',
      'col.state': 'State',
      'col.family': 'Family',
      'col.alert': 'Alert',
      'col.value': 'Value / threshold',
      'col.first_seen': 'First seen',
      'col.changed': 'Last change',
      'col.actor': 'Acted',
      'label.areaServed': 'District',
      'label.refDevice': 'Station',
      'label.organization.name': 'Agency',
      'label.agency': 'Agency',
      'label.source.ip': 'Source IP',
      'label.host.name': 'Host',
      'label.user.name': 'User',
      'label.district': 'District',
      'label.station': 'Station',
      'details.heading': 'Details',
      'details.close': 'Close',
      'details.hint': 'Select an alert to see its details.',
      'details.gone': 'This alert has left the board.',
      'details.rule': 'Rule',
      'details.fingerprint': 'Fingerprint',
      'details.alert_state': 'Latest record',
      'details.flapping': 'flapping',
      'details.value': 'Value',
      'details.threshold': 'Threshold',
      'details.window': 'Window',
      'details.starts_at': 'Episode start',
      'details.first_seen': 'First seen',
      'details.changed': 'Last change',
      'details.ends_at': 'Ended',
      'details.labels': 'Labels',
      'details.evidence': 'Evidence',
      'details.event_ids': 'Event ids',
      'details.event_ids_more': '… and {n} more',
      'details.acted': 'Who acted',
      'details.acked_by': 'Acknowledged by',
      'details.silenced_by': 'Silenced by',
      'details.silenced_until': 'Silenced until',
      'details.silence_reason': 'Reason for the silence',
      'details.last_action': 'Last action',
      'details.comments': 'Comments',
      'details.no_comments': 'No comments yet.',
      'details.none': 'None',
      'details.other_language': 'Tiếng Việt',
      'action.ack': 'Acknowledge',
      'action.silence': 'Silence',
      'action.unsilence': 'Unsilence',
      'action.comment': 'Add comment',
      'action.duration': 'Duration',
      'action.reason': 'Reason (required)',
      'action.comment_text': 'Comment',
      'action.sent': 'Sent: {action}. The board updates when the system records it.',
      'action.name.ack': 'acknowledge',
      'action.name.silence': 'silence',
      'action.name.unsilence': 'unsilence',
      'action.name.comment': 'comment',
      'duration.15m': '15 min',
      'duration.1h': '1 h',
      'duration.4h': '4 h',
      'duration.24h': '24 h',
      'error.reason_required': 'A reason for the silence is required.',
      'error.text_required': 'The comment is empty.',
      'error.network': 'Could not send (network error)',
      'error.http': 'The server answered {status}',
      'error.session': 'Could not load the session; retrying in a few seconds…',
      'figures.heading': 'Figures',
      'figures.empty': 'No figures yet.',
      'figures.stale': 'Could not load the figures',
      'figures.updated': 'updated {time}',
      'panel.aqi_stations': 'VN_AQI per station',
      'panel.aqi_districts': 'VN_AQI per district',
      'panel.water': 'Water levels',
      'panel.overdue': 'Overdue dossiers per agency',
      'panel.failed_logins': 'Failed logins per agency',
      'band.good': 'Good',
      'band.moderate': 'Moderate',
      'band.poor': 'Poor',
      'band.bad': 'Bad',
      'band.very_bad': 'Very bad',
      'band.hazardous': 'Hazardous',
      'water.alert': 'alert',
      'water.danger': 'danger',
      'water.status.ok': 'Normal',
      'water.status.alert': 'Above alert level',
      'water.status.danger': 'Above danger level',
      'overdue.unit': 'dossiers',
      'failed_logins.unit': 'attempts',
    },
  };

  // VN_AQI bands, Decision 1459/QĐ-TCMT Table 1 (the same as streams/core/aqi.py).
  const AQI_BANDS = [
    { high: 50, key: 'good', colour: '#00e400' },
    { high: 100, key: 'moderate', colour: '#ffff00' },
    { high: 150, key: 'poor', colour: '#ff7e00' },
    { high: 200, key: 'bad', colour: '#ff0000' },
    { high: 300, key: 'very_bad', colour: '#8f3f97' },
    { high: Infinity, key: 'hazardous', colour: '#7e0023' },
  ];
  // Band names the server may send, to our keys (the pack says "very bad").
  const BAND_ALIASES = {
    'good': 'good', 'moderate': 'moderate', 'poor': 'poor',
    'unhealthy for sensitive groups': 'poor', 'unhealthy_for_sensitive_groups': 'poor',
    'bad': 'bad', 'unhealthy': 'bad', 'very bad': 'very_bad', 'very_bad': 'very_bad',
    'very unhealthy': 'very_bad', 'very_unhealthy': 'very_bad', 'hazardous': 'hazardous',
  };

  // ---------------------------------------------------------------- state

  const entries = new Map(); // fingerprint → Entry (docs/CONSOLE.md)
  const views = new Map(); // fingerprint → {el, cells, entry, sortKey, passes, attached}
  const order = []; // the visible views, sorted: the rows of the list, in order
  const dirty = new Set(); // fingerprints whose row needs an update
  const moved = new Set(); // views to (re)place in the list this frame
  let everything = false; // language change or snapshot: every row
  let refilter = false; // filters changed: recompute every row's membership
  let rafPending = false;
  let detailsDirty = false;
  let districtsDirty = false; // a row's district changed, or a row came or went

  let lang = pickLang();
  let theme = pickTheme();
  let session = null;
  let selected = null; // fingerprint shown in the details pane
  let visibleCount = 0;
  let eventSource = null;
  let reconnectDelayMs = 1000;
  let lastFigures = null;
  let figuresFailed = false;
  let busy = false;
  const filters = { family: '', severity: '', state: '', district: '', q: '' };
  const stats = { renderCount: 0, lastRenderMs: 0, maxRenderMs: 0, totalRenderMs: 0 };
  const recentRenders = []; // the latest 100: {ms, rows} (rows updated), for measurements

  // ---------------------------------------------------------------- small helpers

  const $ = (selector, root = document) => root.querySelector(selector);
  // The page's fixed elements, looked up once: an attribute selector over 30,000 nodes
  // at every frame was the largest cost of a render.
  const fixed = new Map();
  function byTestId(id) {
    let node = fixed.get(id);
    if (node === undefined || (node !== null && !node.isConnected)) {
      node = document.querySelector(`[data-testid="${id}"]`);
      fixed.set(id, node);
    }
    return node;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(node, text) {
    // Skipping identical writes keeps unchanged cells out of style and layout work.
    if (node._text !== text) {
      node.textContent = text;
      node._text = text;
    }
  }

  function setTitle(node, text) {
    if (node._title !== text) {
      node.title = text;
      node._title = text;
    }
  }

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (_err) {
      return null; // storage disabled: defaults only
    }
  }

  function storageSet(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (_err) {
      // storage disabled: the choice lasts until the page reloads
    }
  }

  function pickLang() {
    const asked = query.get('lang');
    if (asked === 'vi' || asked === 'en') return asked;
    const stored = storageGet('ioc.lang');
    return stored === 'en' ? 'en' : 'vi';
  }

  function pickTheme() {
    if (WALL) return 'dark';
    const stored = storageGet('ioc.theme');
    if (stored === 'light' || stored === 'dark') return stored;
    return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches
      ? 'dark' : 'light';
  }

  function t(key, params) {
    let text = TEXTS[lang][key];
    if (text === undefined) text = TEXTS.vi[key] !== undefined ? TEXTS.vi[key] : key;
    if (params) {
      text = text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
    }
    return text;
  }

  let numberFormat = null;
  let numberFormatLang = '';
  function formatNumber(value) {
    if (numberFormatLang !== lang) {
      numberFormat = new Intl.NumberFormat(lang === 'vi' ? 'vi-VN' : 'en-GB', { maximumFractionDigits: 2 });
      numberFormatLang = lang;
    }
    return numberFormat.format(value);
  }

  function isTime(ms) {
    return typeof ms === 'number' && Number.isFinite(ms);
  }

  // Times are shown on the province's clock (UTC+7, no daylight saving since 1975), in
  // both languages as dd/MM/yyyy HH:mm:ss, whatever the display's time zone. Plain
  // arithmetic: Intl date formatting of 4,000 times cost more than the rest of a render.
  const pad = (n) => (n < 10 ? `0${n}` : String(n));
  function clockParts(ms) {
    const d = new Date(ms + VN_OFFSET_MS);
    return {
      day: Math.floor((ms + VN_OFFSET_MS) / 86400000),
      date: `${pad(d.getUTCDate())}/${pad(d.getUTCMonth() + 1)}`,
      year: d.getUTCFullYear(),
      hm: `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`,
      s: pad(d.getUTCSeconds()),
    };
  }

  let today = 0;
  function refreshToday() {
    today = Math.floor((Date.now() + VN_OFFSET_MS) / 86400000);
  }

  // A time today as 14:03:07; another day as 25/11 14:03.
  function formatTime(ms) {
    if (!isTime(ms)) return '—';
    const p = clockParts(ms);
    return p.day === today ? `${p.hm}:${p.s}` : `${p.date} ${p.hm}`;
  }

  function formatFullTime(ms) {
    if (!isTime(ms)) return '—';
    const p = clockParts(ms);
    return `${p.date}/${p.year} ${p.hm}:${p.s}`;
  }

  function formatValue(value) {
    if (value === null || value === undefined || value === '') return '—';
    if (typeof value === 'number') return Number.isFinite(value) ? formatNumber(value) : String(value);
    if (typeof value === 'object') return JSON.stringify(value);
    return String(value);
  }

  function known(value, list) {
    return list.includes(value) ? value : 'other';
  }

  function labelName(key) {
    const text = t(`label.${key}`);
    return text === `label.${key}` ? key : text;
  }

  function familyLabel(family) {
    return FAMILIES.includes(family) ? t(`family.${family}`) : (family || '—');
  }

  function severityLabel(severity) {
    return SEVERITIES.includes(severity) ? t(`severity.${severity}`) : (severity || '—');
  }

  function stateLabel(state) {
    return STATES.includes(state) ? t(`state.${state}`) : (state || '—');
  }

  function actionLabel(action) {
    return ['ack', 'silence', 'unsilence', 'comment'].includes(action)
      ? t(`action.name.${action}`) : String(action || '');
  }

  function summaryOf(entry) {
    const first = lang === 'en' ? entry.summary_en : entry.summary_vi;
    const second = lang === 'en' ? entry.summary_vi : entry.summary_en;
    return String(first || second || entry.rule || entry.fingerprint);
  }

  function districtOf(entry) {
    // The labels the server's district filter reads (streams.core.board.DISTRICT_LABELS).
    const group = entry.group || {};
    const labels = entry.labels || {};
    const district = labels.areaServed ?? labels.district ?? group.areaServed ?? group.district;
    return district === undefined || district === null ? '' : String(district);
  }

  // Lower case, without Vietnamese diacritics: "Hải Châu" is found by "hai chau".
  function fold(text) {
    return String(text).normalize('NFD').replace(/[\u0300-\u036f]/g, '')
      .replace(/đ/g, 'd').replace(/Đ/g, 'D').toLowerCase();
  }

  function haystackOf(entry) {
    const parts = [entry.summary_vi, entry.summary_en, entry.rule, entry.fingerprint];
    for (const source of [entry.labels, entry.group]) {
      if (source && typeof source === 'object') {
        for (const [key, value] of Object.entries(source)) parts.push(key, value);
      }
    }
    return fold(parts.filter((p) => p !== null && p !== undefined).join('\u0001'));
  }

  function groupPairs(entry) {
    const group = entry.group && typeof entry.group === 'object' ? entry.group : {};
    const keys = Object.keys(group);
    keys.sort((a, b) => {
      const ia = KNOWN_LABELS.indexOf(a);
      const ib = KNOWN_LABELS.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : a > b ? 1 : 0);
    });
    return keys.map((key) => [key, group[key]]);
  }

  function whoActed(entry) {
    let text = '';
    const last = entry.last_action;
    if (last && last.user) text = `${last.user} · ${actionLabel(last.action)}`;
    else if (entry.silenced_by) text = String(entry.silenced_by);
    else if (entry.acked_by) text = String(entry.acked_by);
    if (entry.state === 'silenced' && isTime(entry.silenced_until_ms)) {
      text += ` → ${formatTime(entry.silenced_until_ms)}`;
    }
    return text;
  }

  function sortKeyOf(entry) {
    const state = entry.state;
    return [
      state === 'resolved' ? 1 : 0,
      SEVERITY_RANK[entry.severity] ?? 3,
      STATE_RANK[state] ?? 0,
      -(isTime(entry.first_seen_ms) ? entry.first_seen_ms : 0),
      String(entry.fingerprint),
    ];
  }

  function sameKey(a, b) {
    if (!a || !b) return false;
    for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
    return true;
  }

  function compareKeys(a, b) {
    for (let i = 0; i < a.length; i += 1) {
      if (a[i] < b[i]) return -1;
      if (a[i] > b[i]) return 1;
    }
    return 0;
  }

  // The index in `order` of the first view whose placed key is not below `key`.
  function orderIndex(key) {
    let low = 0;
    let high = order.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (compareKeys(order[mid].placedKey, key) < 0) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  function passes(entry, haystack) {
    if (filters.family && entry.family !== filters.family) return false;
    if (filters.severity && entry.severity !== filters.severity) return false;
    if (filters.state === 'active') {
      if (entry.state === 'resolved') return false;
    } else if (filters.state && entry.state !== filters.state) return false;
    if (filters.district && districtOf(entry) !== filters.district) return false;
    if (filters.q && !haystack.includes(filters.q)) return false;
    return true;
  }

  // ---------------------------------------------------------------- rows

  let rowPrototype = null;
  function makeRowPrototype() {
    const row = el('div', 'row');
    row.setAttribute('data-testid', 'alert-row');
    row.setAttribute('role', 'listitem');
    const cells = [
      ['span', 'c-sev sev', 'alert-severity'],
      ['span', 'c-state badge', 'alert-state'],
      ['span', 'c-family', 'alert-family'],
      ['div', 'c-main', null],
      ['span', 'c-value', 'alert-value'],
      ['span', 'c-first time', 'alert-first-seen'],
      ['span', 'c-changed time', 'alert-changed'],
      ['span', 'c-actor', 'alert-actor'],
    ];
    for (const [tag, className, testId] of cells) {
      const cell = el(tag, className);
      if (testId) cell.setAttribute('data-testid', testId);
      row.appendChild(cell);
    }
    const main = row.children[3];
    const summary = el('div', 'summary');
    summary.setAttribute('data-testid', 'alert-summary');
    const groups = el('div', 'groups');
    groups.setAttribute('data-testid', 'alert-group');
    main.append(summary, groups);
    return row;
  }

  function createView(fingerprint) {
    if (!rowPrototype) rowPrototype = makeRowPrototype();
    const row = rowPrototype.cloneNode(true);
    row.dataset.fingerprint = fingerprint;
    if (!WALL) row.tabIndex = 0;
    const c = row.children;
    return {
      el: row,
      cells: {
        sev: c[0], state: c[1], family: c[2], summary: c[3].children[0], groups: c[3].children[1],
        value: c[4], first: c[5], changed: c[6], actor: c[7],
      },
      entry: null,
      district: '',
      sortKey: null,
      placedKey: null, // the key it has in `order`, null when not in it
      passes: false,
      attached: false,
      className: '',
      groupsKey: null,
      haystack: '',
    };
  }

  function updateView(view, entry) {
    const cells = view.cells;
    view.entry = entry;
    const district = districtOf(entry);
    if (district !== view.district) {
      view.district = district;
      districtsDirty = true;
    }
    const sev = known(entry.severity, SEVERITIES);
    const state = known(entry.state, STATES);
    const className = `row sev-${sev} state-${state}${selected === entry.fingerprint ? ' selected' : ''}`;
    if (view.className !== className) {
      view.el.className = className;
      view.className = className;
    }
    setText(cells.sev, severityLabel(entry.severity));
    setText(cells.state, stateLabel(entry.state));
    if (cells.state._state !== state) {
      cells.state.className = `c-state badge badge-${state}`;
      cells.state._state = state;
      view.el.dataset.state = String(entry.state);
    }
    setText(cells.family, familyLabel(entry.family));
    setText(cells.summary, summaryOf(entry));

    const pairs = groupPairs(entry);
    const groupsKey = `${lang}\u0001${entry.rule}\u0001${JSON.stringify(pairs)}`;
    if (view.groupsKey !== groupsKey) {
      view.groupsKey = groupsKey;
      const frag = document.createDocumentFragment();
      if (entry.rule) frag.appendChild(el('span', 'rule', entry.rule));
      for (const [key, value] of pairs) {
        const chip = el('span', 'chip');
        chip.append(el('span', 'k', labelName(key)), el('span', 'v', formatValue(value)));
        frag.appendChild(chip);
      }
      cells.groups.replaceChildren(frag);
    }

    let value = formatValue(entry.value);
    if (entry.threshold !== null && entry.threshold !== undefined) value += ` / ${formatValue(entry.threshold)}`;
    if (entry.window) value += ` · ${entry.window}`;
    setText(cells.value, value);
    const over = typeof entry.value === 'number' && typeof entry.threshold === 'number'
      && entry.value > entry.threshold;
    cells.value.classList.toggle('over', over);

    setText(cells.first, formatTime(entry.first_seen_ms));
    setText(cells.changed, formatTime(entry.changed_ms));
    setTitle(cells.first, formatFullTime(entry.first_seen_ms));
    setTitle(cells.changed, formatFullTime(entry.changed_ms));
    setText(cells.actor, whoActed(entry));

    view.haystack = haystackOf(entry);
    const key = sortKeyOf(entry);
    const pass = passes(entry, view.haystack);
    if (!sameKey(key, view.sortKey) || pass !== view.passes) moved.add(view);
    view.sortKey = key;
    view.passes = pass;
  }

  // Moves only the rows in `moved` (new, gone, re-sorted, in or out of the filter): each
  // leaves `order` and the list, then goes back in at its place by binary search. The
  // other rows keep their relative order, so a row goes in before the next attached one.
  function placeRows(list) {
    for (const view of moved) {
      if (view.placedKey) {
        const index = orderIndex(view.placedKey);
        if (order[index] === view) order.splice(index, 1);
        view.placedKey = null;
      }
      if (view.attached) {
        view.el.remove();
        view.attached = false;
      }
    }
    for (const view of moved) {
      if (!view.passes || views.get(view.el.dataset.fingerprint) !== view) continue;
      order.splice(orderIndex(view.sortKey), 0, view);
      view.placedKey = view.sortKey;
    }
    for (const view of moved) {
      if (!view.placedKey) continue;
      let next = orderIndex(view.placedKey) + 1;
      while (next < order.length && !order[next].attached) next += 1;
      list.insertBefore(view.el, next < order.length ? order[next].el : null);
      view.attached = true;
    }
    moved.clear();
    visibleCount = order.length;
  }

  // ---------------------------------------------------------------- render loop

  function schedule() {
    if (!rafPending) {
      rafPending = true;
      window.requestAnimationFrame(render);
    }
  }

  function render() {
    rafPending = false;
    const started = performance.now();
    refreshToday();
    const list = byTestId('alert-list');
    if (everything) {
      for (const fingerprint of entries.keys()) dirty.add(fingerprint);
      for (const fingerprint of views.keys()) dirty.add(fingerprint);
      everything = false;
    }
    if (refilter) {
      for (const view of views.values()) {
        const pass = passes(view.entry, view.haystack);
        if (pass !== view.passes) {
          view.passes = pass;
          moved.add(view);
        }
      }
      refilter = false;
    }
    let changed = dirty.size > 0;
    const updated = dirty.size;
    for (const fingerprint of dirty) {
      const entry = entries.get(fingerprint);
      let view = views.get(fingerprint);
      if (!entry) {
        if (view) {
          views.delete(fingerprint);
          moved.add(view); // leaves `order` and the list
          if (view.district) districtsDirty = true;
        }
        continue;
      }
      if (!view) {
        view = createView(fingerprint);
        views.set(fingerprint, view);
      }
      updateView(view, entry);
      if (fingerprint === selected) detailsDirty = true;
    }
    dirty.clear();
    if (moved.size) {
      placeRows(list);
      changed = true;
    }
    if (changed) {
      renderCounts();
      renderListMeta();
    }
    if (detailsDirty) {
      detailsDirty = false;
      renderDetails();
    }
    const took = performance.now() - started;
    recentRenders.push({ ms: took, rows: updated });
    if (recentRenders.length > 100) recentRenders.shift();
    stats.renderCount += 1;
    stats.lastRenderMs = took;
    stats.totalRenderMs += took;
    if (took > stats.maxRenderMs) stats.maxRenderMs = took;
  }

  function renderCounts() {
    const counts = { city: 0, services: 0, security: 0, critical: 0, warning: 0, info: 0 };
    for (const state of STATES) counts[state] = 0;
    for (const view of views.values()) {
      const entry = view.entry;
      if (entry.state === 'resolved') continue; // Counts are of the entries not resolved
      if (entry.family in counts) counts[entry.family] += 1;
      if (entry.severity in counts) counts[entry.severity] += 1;
      if (entry.state in counts) counts[entry.state] += 1;
    }
    for (const [name, n] of Object.entries(counts)) {
      const node = byTestId(`count-${name}`);
      if (!node) continue;
      if (!node._n) node._n = $('.count-n', node);
      setText(node._n, String(n));
      if (node._zero !== (n === 0)) {
        node._zero = n === 0;
        node.classList.toggle('zero', n === 0);
      }
    }
    const unhandled = counts.firing + counts.flapping;
    const title = unhandled ? `(${unhandled}) ${t('title')}` : t('title');
    if (document.title !== title) document.title = title;
    if (districtsDirty && !WALL) {
      districtsDirty = false;
      const districts = new Set();
      for (const view of views.values()) if (view.district) districts.add(view.district);
      renderDistrictOptions(districts);
    }
  }

  let districtKey = '';
  function renderDistrictOptions(districts) {
    if (filters.district) districts.add(filters.district); // keep the chosen one listed
    const sorted = [...districts].sort((a, b) => a.localeCompare(b, 'vi'));
    const key = `${lang}\u0001${sorted.join('\u0001')}`;
    if (key === districtKey) return;
    districtKey = key;
    const select = byTestId('filter-district');
    const all = el('option', '', t('filter.all'));
    all.value = '';
    const options = [all];
    for (const district of sorted) {
      const option = el('option', '', district);
      option.value = district;
      options.push(option);
    }
    select.replaceChildren(...options);
    select.value = filters.district;
  }

  function renderListMeta() {
    setText(byTestId('list-count'), t('alerts.count', { shown: visibleCount, total: entries.size }));
    byTestId('alert-list-empty').hidden = visibleCount > 0;
  }

  // ---------------------------------------------------------------- details pane

  function select(fingerprint) {
    if (WALL) return;
    const previous = selected ? views.get(selected) : null;
    selected = fingerprint;
    if (previous) {
      previous.el.classList.remove('selected');
      previous.el.removeAttribute('aria-current');
      previous.className = previous.el.className;
    }
    const view = fingerprint ? views.get(fingerprint) : null;
    if (view) {
      view.el.classList.add('selected');
      view.el.setAttribute('aria-current', 'true');
      view.className = view.el.className;
    }
    showError('');
    showStatus('');
    renderDetails();
  }

  function dl(rows) {
    const list = el('dl', 'kv');
    for (const [name, value] of rows) {
      list.append(el('dt', '', name), el('dd', '', value));
    }
    return list;
  }

  function section(title, testId, ...content) {
    const part = el('section', 'details-part');
    if (testId) part.setAttribute('data-testid', testId);
    part.append(el('h4', '', title), ...content);
    return part;
  }

  function evidenceValue(key, value) {
    if (typeof value === 'number' && /(^window_(start|end)$|_ms$)/.test(key) && value > 1e11) {
      return formatFullTime(value);
    }
    return formatValue(value);
  }

  function renderDetails() {
    const pane = byTestId('details');
    const hint = byTestId('details-hint');
    if (WALL) return;
    if (!selected) {
      pane.hidden = true;
      hint.hidden = false;
      return;
    }
    pane.hidden = false;
    hint.hidden = true;
    const entry = entries.get(selected);
    const titleBox = byTestId('details-title');
    const body = byTestId('details-body');
    byTestId('details-gone').hidden = Boolean(entry);
    const actions = byTestId('actions');
    actions.hidden = !(session && session.role === 'operator');
    if (!entry) {
      setActionsEnabled(null);
      return; // keep the last details on screen, marked as gone
    }
    const parts = [];
    const head = el('div', 'details-title');
    const sev = known(entry.severity, SEVERITIES);
    const state = known(entry.state, STATES);
    const badges = el('div', 'badges');
    badges.append(
      el('span', `sev sev-${sev}`, severityLabel(entry.severity)),
      el('span', `badge badge-${state}`, stateLabel(entry.state)),
      el('span', 'family', familyLabel(entry.family)),
    );
    badges.children[1].setAttribute('data-testid', 'details-state');
    const summary = el('p', 'details-summary', summaryOf(entry));
    summary.setAttribute('data-testid', 'details-summary');
    head.append(badges, summary);
    const other = lang === 'en' ? entry.summary_vi : entry.summary_en;
    if (other) head.appendChild(el('p', 'details-other', other));
    titleBox.replaceChildren(head);

    let alertState = String(entry.alert_state || '—');
    if (entry.flapping) alertState += ` (${t('details.flapping')})`;
    parts.push(dl([
      [t('details.rule'), entry.kind ? `${entry.rule || '—'} (${entry.kind})` : String(entry.rule || '—')],
      [t('details.fingerprint'), String(entry.fingerprint)],
      [t('details.alert_state'), alertState],
      [t('details.value'), formatValue(entry.value)],
      [t('details.threshold'), formatValue(entry.threshold)],
      [t('details.window'), formatValue(entry.window)],
      [t('details.starts_at'), formatFullTime(entry.starts_at_ms)],
      [t('details.first_seen'), formatFullTime(entry.first_seen_ms)],
      [t('details.changed'), formatFullTime(entry.changed_ms)],
      [t('details.ends_at'), formatFullTime(entry.ends_at_ms)],
    ]));

    const labels = entry.labels && typeof entry.labels === 'object' ? Object.entries(entry.labels) : [];
    parts.push(section(t('details.labels'), 'details-labels',
      labels.length ? dl(labels.map(([k, v]) => [k, formatValue(v)])) : el('p', 'muted', t('details.none'))));

    const acted = [];
    if (entry.acked_by) acted.push([t('details.acked_by'), String(entry.acked_by)]);
    if (entry.silenced_by) acted.push([t('details.silenced_by'), String(entry.silenced_by)]);
    if (isTime(entry.silenced_until_ms)) acted.push([t('details.silenced_until'), formatFullTime(entry.silenced_until_ms)]);
    if (entry.silence_reason) acted.push([t('details.silence_reason'), String(entry.silence_reason)]);
    const last = entry.last_action;
    if (last && typeof last === 'object') {
      acted.push([t('details.last_action'),
        `${actionLabel(last.action)} · ${last.user || '—'} · ${formatFullTime(last.at_ms)}`]);
    }
    parts.push(section(t('details.acted'), 'details-actor',
      acted.length ? dl(acted) : el('p', 'muted', t('details.none'))));

    const evidence = entry.evidence && typeof entry.evidence === 'object' ? entry.evidence : null;
    const evidenceRows = evidence
      ? Object.entries(evidence).filter(([k]) => k !== 'event_ids').map(([k, v]) => [k, evidenceValue(k, v)])
      : [];
    parts.push(section(t('details.evidence'), 'details-evidence',
      evidenceRows.length ? dl(evidenceRows) : el('p', 'muted', t('details.none'))));

    const ids = evidence && Array.isArray(evidence.event_ids) ? evidence.event_ids : [];
    const idList = el('ul', 'event-ids');
    for (const id of ids.slice(0, MAX_EVENT_IDS_SHOWN)) idList.appendChild(el('li', '', formatValue(id)));
    if (ids.length > MAX_EVENT_IDS_SHOWN) {
      idList.appendChild(el('li', 'muted', t('details.event_ids_more', { n: ids.length - MAX_EVENT_IDS_SHOWN })));
    }
    parts.push(section(t('details.event_ids'), 'details-event-ids',
      ids.length ? idList : el('p', 'muted', t('details.none'))));

    const comments = Array.isArray(entry.comments) ? entry.comments : [];
    const commentList = el('ol', 'comments');
    for (const comment of comments) {
      const item = el('li', 'comment');
      item.setAttribute('data-testid', 'comment-item');
      const meta = el('div', 'comment-meta');
      meta.append(el('strong', '', formatValue(comment.user)), document.createTextNode(' · '),
        el('time', '', formatFullTime(comment.at_ms)));
      item.append(meta, el('p', 'comment-text', formatValue(comment.text)));
      commentList.appendChild(item);
    }
    parts.push(section(t('details.comments'), 'details-comments',
      comments.length ? commentList : el('p', 'muted', t('details.no_comments'))));

    body.replaceChildren(...parts);
    setActionsEnabled(entry);
  }

  function setActionsEnabled(entry) {
    const can = Boolean(entry) && !busy;
    byTestId('ack').disabled = !can || entry.state === 'acknowledged' || entry.state === 'resolved';
    byTestId('unsilence').disabled = !can || entry.state !== 'silenced';
    byTestId('silence').disabled = !can;
    byTestId('comment').disabled = !can;
  }

  function showError(message) {
    const node = byTestId('action-error');
    node.textContent = message;
    node.hidden = !message;
  }

  function showStatus(message) {
    const node = byTestId('action-status');
    node.textContent = message;
    node.hidden = !message;
  }

  // ---------------------------------------------------------------- actions

  function goLogin() {
    window.location.assign('/login');
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === 'string') return body.error;
      if (body && body.error !== undefined) return JSON.stringify(body.error);
    } catch (_err) {
      // not JSON: say the status instead
    }
    return t('error.http', { status: `${response.status} ${response.statusText}`.trim() });
  }

  async function act(action, body) {
    const fingerprint = selected;
    if (!fingerprint || busy || !session) return false;
    showError('');
    showStatus('');
    busy = true;
    setActionsEnabled(entries.get(fingerprint));
    try {
      const response = await fetch(
        `/api/alerts/${encodeURIComponent(fingerprint)}/${action}`,
        {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf },
          body: JSON.stringify(body),
        },
      );
      if (response.status === 401) {
        goLogin();
        return false;
      }
      if (!response.ok) {
        showError(await errorText(response));
        return false;
      }
      showStatus(t('action.sent', { action: actionLabel(action) }));
      return true;
    } catch (err) {
      showError(`${t('error.network')}: ${err && err.message ? err.message : err}`);
      return false;
    } finally {
      busy = false;
      if (selected === fingerprint) setActionsEnabled(entries.get(fingerprint));
    }
  }

  function bindActions() {
    byTestId('ack').addEventListener('click', () => act('ack', {}));
    byTestId('unsilence').addEventListener('click', () => act('unsilence', {}));
    const silenceForm = byTestId('silence-form');
    silenceForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      const reasonInput = byTestId('silence-reason');
      const reason = reasonInput.value.trim();
      if (!reason) {
        showStatus('');
        showError(t('error.reason_required'));
        reasonInput.focus();
        return;
      }
      let duration = Number(byTestId('silence-duration').value);
      if (!SILENCE_DURATIONS_S.includes(duration)) duration = 3600;
      if (await act('silence', { duration_s: duration, reason })) reasonInput.value = '';
    });
    const commentForm = byTestId('comment-form');
    commentForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      const textInput = byTestId('comment-text');
      const text = textInput.value.trim();
      if (!text) {
        showStatus('');
        showError(t('error.text_required'));
        textInput.focus();
        return;
      }
      if (await act('comment', { text })) textInput.value = '';
    });
    byTestId('details-close').addEventListener('click', () => select(null));
  }

  async function logout() {
    try {
      await fetch('/logout', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-CSRF-Token': session ? session.csrf : '' },
      });
    } catch (_err) {
      // the login page is the right place whatever happened
    }
    goLogin();
  }

  // ---------------------------------------------------------------- filters and keys

  function readFilters() {
    const form = byTestId('filters');
    filters.family = form.elements.family.value;
    filters.severity = form.elements.severity.value;
    filters.state = form.elements.state.value;
    filters.district = form.elements.district.value;
    filters.q = fold(form.elements.q.value.trim());
    refilter = true;
    schedule();
  }

  function bindFilters() {
    const form = byTestId('filters');
    let timer = 0;
    form.addEventListener('change', readFilters);
    form.addEventListener('input', (event) => {
      if (event.target.name !== 'q') return;
      clearTimeout(timer);
      timer = setTimeout(readFilters, 120);
    });
    form.addEventListener('submit', (event) => event.preventDefault());
    form.addEventListener('reset', () => setTimeout(readFilters, 0)); // after the reset
  }

  function bindList() {
    const list = byTestId('alert-list');
    list.addEventListener('click', (event) => {
      const row = event.target.closest('.row');
      if (row) select(row.dataset.fingerprint);
    });
    list.addEventListener('keydown', (event) => {
      const row = event.target.closest('.row');
      if (!row) return;
      let next = null;
      if (event.key === 'ArrowDown') next = row.nextElementSibling;
      else if (event.key === 'ArrowUp') next = row.previousElementSibling;
      else if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        select(row.dataset.fingerprint);
        return;
      }
      if (next) {
        event.preventDefault();
        next.focus();
        select(next.dataset.fingerprint);
      }
    });
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && selected) select(null);
    });
  }

  // ---------------------------------------------------------------- language and theme

  function applyTexts() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll('[data-i18n-placeholder]')) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
    for (const node of document.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
    document.title = t('title');
    setConnection(connectionState);
  }

  function setLang(next) {
    lang = next;
    storageSet('ioc.lang', lang);
    applyTexts();
    districtKey = '';
    districtsDirty = true; // the "all" option's text
    for (const view of views.values()) view.groupsKey = null;
    everything = true;
    detailsDirty = true;
    schedule();
    if (lastFigures) renderFigures(lastFigures);
  }

  function applyTheme() {
    document.body.classList.toggle('theme-dark', theme === 'dark');
    document.body.classList.toggle('theme-light', theme !== 'dark');
  }

  // ---------------------------------------------------------------- the live stream

  let connectionState = 'connecting';
  function setConnection(state) {
    connectionState = state;
    const node = byTestId('connection');
    node.dataset.state = state;
    setText(node, t(`conn.${state}`));
  }

  function parse(event) {
    try {
      return JSON.parse(event.data);
    } catch (err) {
      console.error('console: an event that is not JSON', event.type, err);
      return null;
    }
  }

  function onSnapshot(event) {
    const data = parse(event);
    if (!data || !Array.isArray(data.alerts)) return;
    const seen = new Set();
    for (const entry of data.alerts) {
      if (!entry || typeof entry.fingerprint !== 'string') continue;
      entries.set(entry.fingerprint, entry);
      seen.add(entry.fingerprint);
    }
    for (const fingerprint of [...entries.keys()]) if (!seen.has(fingerprint)) entries.delete(fingerprint);
    everything = true;
    detailsDirty = true;
    setConnection('live');
    schedule();
  }

  function onAlert(event) {
    const entry = parse(event);
    if (!entry || typeof entry.fingerprint !== 'string') return;
    entries.set(entry.fingerprint, entry);
    dirty.add(entry.fingerprint);
    schedule();
  }

  function onRemoved(event) {
    const data = parse(event);
    if (!data || typeof data.fingerprint !== 'string') return;
    if (entries.delete(data.fingerprint)) {
      dirty.add(data.fingerprint);
      if (data.fingerprint === selected) detailsDirty = true;
      schedule();
    }
  }

  function connect() {
    if (eventSource) eventSource.close();
    const source = new EventSource('/api/alerts/stream');
    eventSource = source;
    source.addEventListener('open', () => {
      reconnectDelayMs = 1000;
      setConnection('live');
    });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up on a failed response (401, 5xx): find out why, then retry.
        setConnection('offline');
        source.close();
        setTimeout(reconnect, reconnectDelayMs);
        reconnectDelayMs = Math.min(reconnectDelayMs * 2, 30000);
      } else {
        setConnection('reconnecting'); // the browser retries with Last-Event-ID itself
      }
    });
    source.addEventListener('snapshot', onSnapshot);
    source.addEventListener('alert', onAlert);
    source.addEventListener('removed', onRemoved);
  }

  async function reconnect() {
    if (await loadSession()) connect();
    else setTimeout(reconnect, reconnectDelayMs);
  }

  async function loadSession() {
    try {
      const response = await fetch('/api/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (response.status === 401) {
        goLogin();
        return false;
      }
      if (!response.ok) throw new Error(`${response.status}`);
      session = await response.json();
      showBanner('');
      setText(byTestId('session-user'), session.user ? `${session.user} (${session.role})` : '');
      document.body.classList.toggle('operator', session.role === 'operator');
      detailsDirty = true;
      schedule();
      return true;
    } catch (_err) {
      showBanner(t('error.session'));
      return false;
    }
  }

  function showBanner(message) {
    const banner = byTestId('banner');
    banner.textContent = message;
    banner.hidden = !message;
  }

  // ---------------------------------------------------------------- figures

  const charts = [];

  function destroyCharts() {
    for (const chart of charts.splice(0)) chart.destroy();
  }

  function safeColour(colour) {
    return typeof colour === 'string' && /^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/.test(colour) ? colour : null;
  }

  function bandOf(aqi) {
    if (typeof aqi !== 'number' || !Number.isFinite(aqi)) return null;
    return AQI_BANDS.find((band) => aqi <= band.high);
  }

  function bandLabel(item) {
    const key = typeof item.band === 'string' ? BAND_ALIASES[item.band.toLowerCase()] : undefined;
    if (key) return t(`band.${key}`);
    if (lang === 'vi' && item.band_vi) return String(item.band_vi);
    if (item.band) return String(item.band);
    const band = bandOf(item.aqi);
    return band ? t(`band.${band.key}`) : '—';
  }

  // Dark text on light colours (green, yellow, orange), light text on the others.
  function isLight(hex) {
    const full = hex.length === 4 ? `#${hex[1]}${hex[1]}${hex[2]}${hex[2]}${hex[3]}${hex[3]}` : hex;
    const r = parseInt(full.slice(1, 3), 16);
    const g = parseInt(full.slice(3, 5), 16);
    const b = parseInt(full.slice(5, 7), 16);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 140;
  }

  // A series of `trends` for an item: the one the item names (`trend`), else
  // "<kind>:<key>" (e.g. "aqi:HD-AQ-001"); none (no chart) when it is not there.
  function trendOf(trends, item, kind, key) {
    if (!trends || typeof trends !== 'object') return null;
    const names = [];
    if (typeof item.trend === 'string') names.push(item.trend);
    if (key !== undefined && key !== null) names.push(`${kind}:${key}`);
    for (const name of names) {
      const series = trends[name];
      if (Array.isArray(series) && series.length >= 2) return series;
    }
    return null;
  }

  function cssVar(name) {
    return getComputedStyle(document.body).getPropertyValue(name).trim();
  }

  function sparkline(container, series, options = {}) {
    if (typeof window.uPlot !== 'function') return;
    const points = series
      .filter((p) => Array.isArray(p) && isTime(p[0]))
      .map((p) => [p[0] / 1000, typeof p[1] === 'number' && Number.isFinite(p[1]) ? p[1] : null])
      .sort((a, b) => a[0] - b[0]);
    if (points.length < 2) return;
    const xs = points.map((p) => p[0]);
    const data = [xs, points.map((p) => p[1])];
    const stroke = options.stroke || cssVar('--chart-line') || '#3b82f6';
    const seriesOptions = [{}, { stroke, width: WALL ? 3 : 2, points: { show: false } }];
    for (const [level, colourVar] of options.levels || []) {
      if (typeof level !== 'number') continue;
      data.push(xs.map(() => level));
      seriesOptions.push({ stroke: cssVar(colourVar), width: 1, dash: [4, 4], points: { show: false } });
    }
    const host = el('div', 'trend');
    host.setAttribute('data-testid', 'trend');
    container.appendChild(host);
    const size = WALL ? { width: 200, height: 48 } : { width: 160, height: 40 };
    const chart = new window.uPlot({
      ...size,
      pxAlign: false,
      cursor: { show: false },
      select: { show: false },
      legend: { show: false },
      scales: { x: { time: true } },
      axes: [{ show: false }, { show: false }],
      series: seriesOptions,
    }, data, host);
    charts.push(chart);
  }

  function latest(items) {
    let at = null;
    for (const item of items) if (isTime(item.at_ms) && (at === null || item.at_ms > at)) at = item.at_ms;
    return at;
  }

  function panelParts(name) {
    const panel = document.querySelector(`.panel[data-panel="${name}"]`);
    return { panel, body: $('.panel-body', panel), at: $('.panel-at', panel) };
  }

  function fillPanel(name, items, build) {
    const { panel, body, at } = panelParts(name);
    const list = Array.isArray(items) ? items.filter((item) => item && typeof item === 'object') : [];
    panel.classList.toggle('empty', list.length === 0);
    const when = latest(list);
    let note = when === null ? '' : t('figures.updated', { time: formatTime(when) });
    if (figuresFailed) note = note ? `${note} · ${t('figures.stale')}` : t('figures.stale');
    setText(at, note);
    at.classList.toggle('stale', figuresFailed);
    if (!list.length) {
      body.replaceChildren(el('p', 'muted', t('figures.empty')));
      return;
    }
    const frag = document.createDocumentFragment();
    build(list, frag);
    body.replaceChildren(frag);
  }

  function aqiTile(item, label, sub, testId, trends, kind) {
    const tile = el('div', 'tile');
    tile.setAttribute('data-testid', testId);
    tile.dataset.key = label;
    const colour = safeColour(item.colour) || (bandOf(item.aqi) || {}).colour || null;
    if (colour) {
      tile.style.setProperty('--tile-bg', colour); // CSSOM: allowed by style-src 'self'
      tile.classList.add(isLight(colour) ? 'on-light' : 'on-dark');
    } else {
      tile.classList.add('no-data');
    }
    tile.append(el('div', 'tile-name', label));
    if (sub) tile.append(el('div', 'tile-sub', sub));
    tile.append(el('div', 'tile-aqi', formatValue(item.aqi)), el('div', 'tile-band', bandLabel(item)));
    const series = trendOf(trends, item, kind, label);
    if (series) sparkline(tile, series, { stroke: isLight(colour || '#000000') ? '#111111' : '#ffffff' });
    return tile;
  }

  function barRows(list, frag, { key, value, unit, kind, testId, trends }) {
    const sorted = [...list].sort((a, b) => (Number(b[value]) || 0) - (Number(a[value]) || 0));
    const max = Math.max(1, ...sorted.map((item) => Number(item[value]) || 0));
    for (const item of sorted) {
      const row = el('div', 'frow');
      row.setAttribute('data-testid', testId);
      row.dataset.key = formatValue(item[key]);
      const head = el('div', 'frow-head');
      const n = el('span', 'frow-value', formatValue(item[value]));
      n.append(el('small', '', ` ${t(unit)}`));
      head.append(el('span', 'frow-name', formatValue(item[key])), n);
      const bar = el('div', 'fbar');
      const fill = el('div', 'bar-fill');
      fill.style.setProperty('--w', `${Math.max(0, Math.min(100, ((Number(item[value]) || 0) / max) * 100))}%`);
      bar.appendChild(fill);
      row.append(head, bar);
      const series = trendOf(trends, item, kind, item[key]);
      if (series) sparkline(row, series);
      frag.appendChild(row);
    }
  }

  function waterRows(list, frag, trends) {
    const ratio = (item) => (typeof item.danger_m === 'number' && item.danger_m > 0
      ? item.level_m / item.danger_m : 0);
    const sorted = [...list].sort((a, b) => ratio(b) - ratio(a));
    for (const item of sorted) {
      const level = typeof item.level_m === 'number' ? item.level_m : null;
      const alert = typeof item.alert_m === 'number' ? item.alert_m : null;
      const danger = typeof item.danger_m === 'number' ? item.danger_m : null;
      let status = 'ok';
      if (level !== null && danger !== null && level >= danger) status = 'danger';
      else if (level !== null && alert !== null && level >= alert) status = 'alert';
      const row = el('div', `frow water ${status}`);
      row.setAttribute('data-testid', 'water-row');
      row.dataset.key = formatValue(item.station);
      row.dataset.status = status;
      const head = el('div', 'frow-head');
      const name = el('span', 'frow-name', formatValue(item.station));
      if (item.district) name.append(el('small', '', ` ${item.district}`));
      const value = el('span', 'frow-value', level === null ? '—' : `${formatValue(level)} m`);
      head.append(name, value);
      const top = Math.max(level || 0, alert || 0, danger || 0) * 1.15 || 1;
      const pct = (x) => `${Math.max(0, Math.min(100, (x / top) * 100))}%`;
      const bar = el('div', 'fbar gauge');
      const fill = el('div', 'bar-fill');
      fill.style.setProperty('--w', pct(level || 0));
      bar.appendChild(fill);
      for (const [mark, className] of [[alert, 'mark-alert'], [danger, 'mark-danger']]) {
        if (mark === null) continue;
        const tick = el('div', `mark ${className}`);
        tick.style.setProperty('--x', pct(mark));
        bar.appendChild(tick);
      }
      const levels = el('div', 'frow-note');
      const notes = [];
      if (alert !== null) notes.push(`${t('water.alert')} ${formatValue(alert)} m`);
      if (danger !== null) notes.push(`${t('water.danger')} ${formatValue(danger)} m`);
      levels.append(el('span', `status status-${status}`, t(`water.status.${status}`)),
        document.createTextNode(notes.length ? ` · ${notes.join(' · ')}` : ''));
      row.append(head, bar, levels);
      const series = trendOf(trends, item, 'water', item.station);
      if (series) sparkline(row, series, { levels: [[alert, '--warning'], [danger, '--critical']] });
      frag.appendChild(row);
    }
  }

  function renderFigures(data) {
    lastFigures = data;
    destroyCharts();
    const trends = data && data.trends;
    const aqi = (data && data.aqi) || {};
    fillPanel('aqi-stations', aqi.stations, (list, frag) => {
      for (const item of list) {
        frag.appendChild(aqiTile(item, formatValue(item.station), item.district ? String(item.district) : '',
          'aqi-tile', trends, 'aqi'));
      }
    });
    fillPanel('aqi-districts', aqi.districts, (list, frag) => {
      for (const item of list) {
        frag.appendChild(aqiTile(item, formatValue(item.district), '', 'aqi-district-tile', trends, 'aqi_district'));
      }
    });
    fillPanel('water', data && data.water, (list, frag) => waterRows(list, frag, trends));
    fillPanel('overdue', data && data.overdue, (list, frag) => barRows(list, frag, {
      key: 'agency', value: 'overdue', unit: 'overdue.unit', kind: 'overdue', testId: 'overdue-row', trends,
    }));
    fillPanel('failed-logins', data && data.failed_logins, (list, frag) => barRows(list, frag, {
      key: 'agency', value: 'count', unit: 'failed_logins.unit', kind: 'failed_logins',
      testId: 'failed-logins-row', trends,
    }));
    if (WALL) showPanel(panelIndex);
  }

  async function loadFigures() {
    try {
      const response = await fetch('/api/figures', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (response.status === 401) {
        goLogin();
        return;
      }
      if (!response.ok) throw new Error(`${response.status}`);
      const data = await response.json();
      figuresFailed = false;
      renderFigures(data);
    } catch (_err) {
      figuresFailed = true; // keep the last figures, marked stale
      renderFigures(lastFigures || {});
    } finally {
      setTimeout(loadFigures, FIGURES_EVERY_MS);
    }
  }

  // Wall: one figure panel at a time, the next every 15 s (empty panels skipped).
  let panelIndex = 0;
  function showPanel(index) {
    const panels = [...document.querySelectorAll('.panel')];
    const withData = panels.filter((panel) => !panel.classList.contains('empty'));
    const pool = withData.length ? withData : panels;
    const current = pool[index % pool.length];
    for (const panel of panels) panel.classList.toggle('active', panel === current);
    const dots = byTestId('panel-rotation');
    const frag = document.createDocumentFragment();
    for (const panel of pool) frag.appendChild(el('span', panel === current ? 'dot on' : 'dot'));
    dots.replaceChildren(frag);
  }

  function rotatePanels() {
    panelIndex += 1;
    showPanel(panelIndex);
  }

  // ---------------------------------------------------------------- clock

  function tick() {
    refreshToday();
    const p = clockParts(Date.now());
    setText(byTestId('clock'), `${p.date} ${p.hm}:${p.s}`);
  }

  // ---------------------------------------------------------------- start

  function start() {
    document.body.classList.toggle('wall', WALL);
    document.body.classList.toggle('desk', !WALL);
    document.body.classList.remove('loading');
    applyTheme();
    applyTexts();
    refreshToday();
    tick();
    setInterval(tick, 1000);
    if (!WALL) {
      bindFilters();
      bindList();
      bindActions();
      byTestId('lang-toggle').addEventListener('click', () => setLang(lang === 'vi' ? 'en' : 'vi'));
      byTestId('theme-toggle').addEventListener('click', () => {
        theme = theme === 'dark' ? 'light' : 'dark';
        storageSet('ioc.theme', theme);
        applyTheme();
        if (lastFigures) renderFigures(lastFigures); // chart colours follow the theme
      });
      byTestId('logout').addEventListener('click', logout);
    } else {
      showPanel(0);
      setInterval(rotatePanels, ROTATE_EVERY_MS);
    }
    renderDetails();
    renderListMeta();
    loadSession().then((ok) => {
      if (ok) connect();
      else setTimeout(reconnect, reconnectDelayMs);
      loadFigures();
    });
  }

  window.iocConsole = Object.freeze({
    get renderCount() { return stats.renderCount; },
    get lastRenderMs() { return stats.lastRenderMs; },
    get maxRenderMs() { return stats.maxRenderMs; },
    get totalRenderMs() { return stats.totalRenderMs; },
    alerts: () => entries.size,
    visible: () => visibleCount,
    recentRenders: () => recentRenders.slice(),
    lang: () => lang,
    wall: WALL,
  });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
