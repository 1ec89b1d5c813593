#!/usr/bin/env bash
# Banned C functions, in the manner of curl's checksrc: fails when a C file
# of src/, include/, fuzz/ or bench/ calls one.
#
#   sprintf vsprintf strcpy strcat   no bound on the destination: use snprintf,
#                                    qs_buf_printf or qs_strlcpy
#   strncpy strncat                  leave the destination unterminated or are
#                                    misused as bounded copies: qs_strlcpy
#   atoi atol atoll                  no error at all: qs_parse_u64
#   gets                             unbounded
#   strtok gmtime localtime ctime    keep hidden state: not safe with the
#   asctime                          daemon's threads (strtok_r, gmtime_r)
#   strto*  (strtol strtoul strtoull strtoll strtod strtof strtold strtoimax
#            strtoumax) anywhere but the number parsers of src/util.c
#            (qs_parse_u64_prefix, qs_parse_double), which check the end
#            pointer and errno; every other number parser is built on them.
#
# test/ is exempt: the suites never ship, parse only what they or the peers
# they started wrote, and run under ASan+UBSan, where an overflowing copy
# fails the run.
#
# usage: test/check-banned.sh [DIR]   (default: the repository)
set -uo pipefail

ROOT=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT" || exit 2

BANNED='sprintf|vsprintf|strcpy|strcat|strncpy|strncat|atoi|atol|atoll|gets|strtok|gmtime|localtime|ctime|asctime'
STRTO='strto(l|ul|ull|ll|d|f|ld|imax|umax)'
# The only functions that may call strto*, all in src/util.c.
PARSERS='qs_parse_u64_prefix qs_parse_double'

mapfile -t files < <(find src include fuzz bench -name '*.[ch]' 2>/dev/null | sort)
[ ${#files[@]} -gt 0 ] || { echo "check-banned: no C files under $ROOT" >&2; exit 2; }

# Prints FILE:LINE:FUNCTION:NAME for every call of a banned or strto*
# function, with comments and string literals blanked out first. FUNCTION is
# the function definition the call is in ("-" outside one).
scan() {
    /usr/bin/python3 - "$BANNED" "$STRTO" "$@" <<'PY'
import re, sys
banned, strto, files = sys.argv[1], sys.argv[2], sys.argv[3:]
call = re.compile(r'(?<![A-Za-z0-9_.>])(%s|%s)\s*\(' % (banned, strto))
# A function definition starts at column 0: "type name(" not ending in ';'.
defn = re.compile(r'^[A-Za-z_][^;(]*?\b([A-Za-z_][A-Za-z0-9_]*)\s*\(')
def blank(text):
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + re.sub(r'[^\n]', ' ', text[i + 1:j]) + c); i = j + 1
        else:
            out.append(c); i += 1
    return ''.join(out)
for f in files:
    fn = '-'
    for no, line in enumerate(blank(open(f, encoding='utf-8').read()).split('\n'), 1):
        m = defn.match(line)
        if m and not line.rstrip().endswith(';'):
            fn = m.group(1)
        elif line.startswith('}'):
            fn = '-'
        for c in call.finditer(line):
            print('%s:%d:%s:%s' % (f, no, fn, c.group(1)))
PY
}

fails=0
while IFS=: read -r file line fn name; do
    if [[ $name =~ ^$STRTO$ ]]; then
        if [ "$file" = src/util.c ] && [[ " $PARSERS " == *" $fn "* ]]; then
            continue
        fi
        echo "check-banned: $file:$line: $name() outside the number parsers of src/util.c ($PARSERS): use them" >&2
    else
        echo "check-banned: $file:$line: $name() is banned (see test/check-banned.sh)" >&2
    fi
    fails=$((fails + 1))
done < <(scan "${files[@]}")

if [ $fails -ne 0 ]; then
    echo "check-banned: $fails banned call(s)" >&2
    exit 1
fi
echo "check-banned: ok: ${#files[@]} files, no banned call"
