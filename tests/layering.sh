#!/bin/sh
# layering.sh: fails when a file includes a header from a layer above its
# own.  Direction: kernels <- quant <- engine <- api <- server (a module may
# include its own headers and those of modules to its left), and no module
# includes another module's *-int.h.
top=${FP8D_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 1
rank() {
    case $1 in
    kernels) echo 0 ;; quant) echo 1 ;; engine) echo 2 ;; api) echo 3 ;; server) echo 4 ;;
    *) echo -1 ;;
    esac
}
bad=0
checked=0
for dir in kernels quant engine api server; do
    r=$(rank "$dir")
    for f in "$dir"/*.c "$dir"/*.h; do
        [ -f "$f" ] || continue
        checked=$((checked + 1))
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
        sed 's/^\([0-9]*\):.*"\([^"]*\)".*/\1 \2/' > /tmp/layering.$$
        while read -r line inc; do
            mod=${inc%%/*}
            [ "$mod" = "$inc" ] && continue          # "config.h" and the like
            ir=$(rank "$mod")
            [ "$ir" -lt 0 ] && continue
            if [ "$ir" -gt "$r" ]; then
                echo "layering: $f:$line includes $inc from '$mod', a layer above '$dir'"
                bad=1
            fi
            case $inc in
            *-int.h) if [ "$mod" != "$dir" ]; then
                         echo "layering: $f:$line includes $inc, private to '$mod'"
                         bad=1
                     fi ;;
            esac
        done < /tmp/layering.$$
        rm -f /tmp/layering.$$
    done
done
echo "layering: $checked files checked"
[ $bad -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $bad
