"""`tuneserve jobs report`: the command (`command`) and the self-contained HTML page it writes (`html`)."""
