"""What watches a run: the observer registry (:mod:`.hooks`), run logging and the stderr
echo (:mod:`.logs`) and the terminal reporter (:mod:`.reporter`)."""
